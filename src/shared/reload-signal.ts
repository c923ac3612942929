/**
 * The signals an app may take as "reload": the webhook accepts these in config-reloader.io/reload-signal and the
 * reloader in --reload-signal. One list for both sides, so they cannot drift apart. SIGTERM is the restart's
 * (restart-on-env-change), never a reload.
 */
export const RELOAD_SIGNALS = ['SIGHUP', 'SIGUSR1', 'SIGUSR2'] as const;
export type ReloadSignal = (typeof RELOAD_SIGNALS)[number];
