/**
 * Asks for an API key in the page's modal <dialog> (focus is trapped and Escape cancels, as the
 * element does natively). Resolves with the key the user gave, already stored as they chose, or
 * null when they cancelled.
 */
import type { KeyStore } from "./api-key.ts";

export interface KeyDialogElements {
  dialog: HTMLDialogElement;
  form: HTMLFormElement;
  reason: HTMLElement;
  input: HTMLInputElement;
  remember: HTMLInputElement;
  cancel: HTMLButtonElement;
  forget: HTMLButtonElement;
}

export function keyDialog(el: KeyDialogElements, keys: KeyStore) {
  let pending: ((key: string | null) => void) | null = null;
  const close = (key: string | null) => {
    const resolve = pending;
    pending = null;
    if (el.dialog.open) el.dialog.close();
    el.input.value = "";
    resolve?.(key);
  };
  el.form.addEventListener("submit", (e) => {
    e.preventDefault();
    const key = el.input.value.trim();
    if (!key) {
      el.input.setCustomValidity("Enter a key, or cancel.");
      el.input.reportValidity();
      return;
    }
    keys.set(key, el.remember.checked);
    close(key);
  });
  el.input.addEventListener("input", () => el.input.setCustomValidity(""));
  el.cancel.addEventListener("click", () => close(null));
  el.forget.addEventListener("click", () => {
    keys.clear();
    close(null);
  });
  // Escape, or anything else that closes the dialog without a key.
  el.dialog.addEventListener("close", () => {
    if (pending) close(null);
  });

  return {
    /** Opens the dialog with `reason` as its explanation. */
    ask(reason: string): Promise<string | null> {
      if (pending) close(null);
      el.reason.textContent = reason;
      el.forget.hidden = keys.get() === null;
      el.remember.checked = keys.where() === "this device";
      el.dialog.showModal();
      el.input.focus();
      return new Promise((resolve) => {
        pending = resolve;
      });
    },
  };
}
