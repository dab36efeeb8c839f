// Clipboard write with a fallback for webviews that refuse the async Clipboard API.
export async function copyText(text: string): Promise<void> {
  try {
    await navigator.clipboard.writeText(text);
    return;
  } catch {
    // Fall through to the selection-based copy.
  }
  const ta = document.createElement("textarea");
  ta.value = text;
  ta.setAttribute("readonly", "");
  ta.style.position = "fixed";
  ta.style.opacity = "0";
  document.body.appendChild(ta);
  ta.select();
  // execCommand is deprecated but is the only path left when the Clipboard API is denied.
  // eslint-disable-next-line @typescript-eslint/no-deprecated
  const ok = document.execCommand("copy");
  ta.remove();
  if (!ok) throw new Error("The clipboard is not available.");
}
