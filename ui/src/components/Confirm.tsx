// An in-page confirmation dialog (native confirm() is unreliable in webviews and blocks tests).
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";

export interface ConfirmOptions {
  title: string;
  body?: string;
  confirm?: string;
  danger?: boolean;
  /** A checkbox under the text (unchecked at first), e.g. "delete it at the cloud too". */
  check?: { label: string; help?: string };
}

export interface ConfirmChoice {
  ok: boolean;
  /** Whether the checkbox was ticked when the user confirmed. */
  checked: boolean;
}

type Pending = ConfirmOptions & { resolve: (r: ConfirmChoice) => void };
let show: ((p: Pending) => void) | null = null;

export function confirmDialog(opts: ConfirmOptions): Promise<boolean> {
  return confirmChoice(opts).then((r) => r.ok);
}

/** Like [`confirmDialog`], with the state of its checkbox. */
export function confirmChoice(opts: ConfirmOptions): Promise<ConfirmChoice> {
  return new Promise((resolve) => {
    if (!show) resolve({ ok: false, checked: false });
    else show({ ...opts, resolve });
  });
}

export function ConfirmHost() {
  const [pending, setPending] = useState<Pending | null>(null);
  const [checked, setChecked] = useState(false);
  const cancelRef = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    show = (p) => {
      setChecked(false);
      setPending(p);
    };
    return () => {
      show = null;
    };
  }, []);
  // A layout effect runs in the same task as the render that shows the dialog, so no key press
  // can arrive between the dialog appearing and Escape being handled (a plain effect runs after
  // paint and lost Escape presses under load).
  useLayoutEffect(() => {
    if (!pending) return;
    cancelRef.current?.focus();
    // On the document, so Escape works even before focus has moved into the dialog.
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape") {
        pending.resolve({ ok: false, checked: false });
        setPending(null);
      }
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, [pending]);
  if (!pending) return null;
  const close = (ok: boolean) => {
    pending.resolve({ ok, checked: ok && checked });
    setPending(null);
  };
  return (
    <div class="modal-backdrop" onClick={() => close(false)}>
      <div
        class="modal"
        role="alertdialog"
        aria-modal="true"
        aria-labelledby="confirm-title"
        data-testid="confirm-dialog"
        onClick={(e) => e.stopPropagation()}
      >
        <h2 id="confirm-title">{pending.title}</h2>
        {pending.body && <p>{pending.body}</p>}
        {pending.check && (
          <label class="check">
            <input type="checkbox" checked={checked} onChange={(e) => setChecked(e.currentTarget.checked)} data-testid="confirm-check" />
            <span>
              {pending.check.label}
              {pending.check.help && <small class="hint stacked">{pending.check.help}</small>}
            </span>
          </label>
        )}
        <div class="actions end">
          <button type="button" class="btn" ref={cancelRef} data-testid="confirm-cancel" onClick={() => close(false)}>
            Cancel
          </button>
          <button type="button" class={`btn ${pending.danger ? "danger-fill" : "primary"}`} data-testid="confirm-ok" onClick={() => close(true)}>
            {pending.confirm ?? "OK"}
          </button>
        </div>
      </div>
    </div>
  );
}
