import type { Logger } from '../shared/log.ts';
import type { EventsConfig } from './config.ts';
import { ApiError, describeError, forbiddenSubject } from './kube/api-error.ts';
import type { KubeClient } from './kube/client.ts';

/** The reasons the reloader records (docs/reloader.md#events). */
type EventReason = 'ConfigApplied' | 'ConfigRejected' | 'ContainerRestarted';

/** Where events go: recorded, or nowhere (no --events). */
export interface EventSink {
  record(reason: EventReason, type: 'Normal' | 'Warning', message: string): void;
}

/** How long one Event POST may take: events are a courtesy, never a reason to hold anything. */
const EVENT_DEADLINE_MS = 5000;
/** The API server's limit on an Event's message (NoteLengthLimit is 1 KiB); ours are far shorter. */
const MAX_MESSAGE = 1024;
const COMPONENT = 'config-reloader';

/** RFC 3339 in whole seconds, as core/v1 Event timestamps are (metav1.Time). */
function seconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * Records core/v1 Events on the reloader's own pod (involvedObject with its uid, so `kubectl describe pod` lists
 * them), fire and forget with a deadline. A 403 is logged once as a warning naming the Role to grant, and no
 * Event is tried again; other failures are logged once at warn level, then at debug.
 */
export class EventRecorder implements EventSink {
  private readonly config: EventsConfig;
  private readonly client: KubeClient;
  private readonly log: Logger;
  private forbidden = false;
  private warned = false;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly closing = new AbortController();

  constructor(config: EventsConfig, client: KubeClient, log: Logger) {
    this.config = config;
    this.client = client;
    this.log = log;
  }

  record(reason: EventReason, type: 'Normal' | 'Warning', message: string): void {
    if (this.forbidden || this.closing.signal.aborted) return;
    const p = this.post(reason, type, message.slice(0, MAX_MESSAGE)).finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  /** Resolves when no Event is being sent (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all(this.inFlight);
  }

  /** Ends Events in flight: nothing waits for them at shutdown. */
  close(): void {
    this.closing.abort();
  }

  private async post(reason: EventReason, type: 'Normal' | 'Warning', message: string): Promise<void> {
    const { podName, podUid, podNamespace } = this.config;
    const now = seconds(new Date());
    const event = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { generateName: `${podName}.`, namespace: podNamespace },
      involvedObject: { apiVersion: 'v1', kind: 'Pod', name: podName, namespace: podNamespace, uid: podUid },
      reason,
      message,
      type,
      source: { component: COMPONENT },
      reportingComponent: COMPONENT,
      reportingInstance: podName,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    const signal = AbortSignal.any([AbortSignal.timeout(EVENT_DEADLINE_MS), this.closing.signal]);
    try {
      await this.client.postJson(`/api/v1/namespaces/${podNamespace}/events`, event, { signal });
      this.log.debug({ reason, type }, 'event recorded');
    } catch (err) {
      if (this.closing.signal.aborted) return;
      if (err instanceof ApiError && err.code === 403) {
        if (this.forbidden) return;
        this.forbidden = true;
        this.log.warn(
          { reason, code: 403 },
          `cannot record events: ${forbiddenSubject(err.status?.message)} may not create events in namespace ${podNamespace}; ` +
            `grant it a Role with verbs [create] on resource events (docs/reloader.md#events), or drop ` +
            `config-reloader.io/events. No more events are tried until the reloader restarts`,
        );
        return;
      }
      const fields = { reason, error: describeError(err) };
      if (this.warned) this.log.debug(fields, 'recording an event failed again');
      else {
        this.warned = true;
        this.log.warn(
          fields,
          `recording an event failed (${fields.error}): check that the API server is reachable from the pod and accepts Events in namespace ${podNamespace} (reloads go on without them); later failures are logged at debug level`,
        );
      }
    }
  }
}
