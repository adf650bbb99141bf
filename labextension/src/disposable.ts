/**
 * The once-only bookkeeping of `IDisposable`, for the plugin's long-lived helpers
 * (the notifier, the error buttons): `dispose()` runs `onDispose` the first time
 * only, and `isDisposed` says whether it has run.
 */

import type { IDisposable } from '@lumino/disposable';

export abstract class OnceDisposable implements IDisposable {
  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this.onDispose();
  }

  /** Disconnect from signals and release what the object holds (runs once). */
  protected abstract onDispose(): void;

  private _isDisposed = false;
}
