// Runs a command, shows its error (or a success notice) as a toast, and returns its result.
import { errorMessage } from "./ipc";
import { store, toastError, toastNotice } from "./store";

export async function attempt<T>(p: Promise<T>, ok?: string): Promise<{ ok: true; value: T } | { ok: false }> {
  try {
    const value = await p;
    if (ok) store.dispatch(toastNotice(ok));
    return { ok: true, value };
  } catch (e) {
    store.dispatch(toastError(errorMessage(e)));
    return { ok: false };
  }
}
