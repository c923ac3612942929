/** Any Kubernetes object as JSON: what the store keeps and the wire carries. */
export type KubeObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: unknown };
  [k: string]: unknown;
};

/** One RBAC-like rule: what a service account may do. */
export interface Grant {
  verbs: string[];
  resource: string;
  /** '' (the default) is the core group. */
  group?: string;
  /** Absent: every namespace (a ClusterRole bound cluster-wide). */
  namespace?: string;
  /** RBAC resourceNames: only these objects; list and watch then need fieldSelector=metadata.name=NAME. */
  names?: string[];
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
