/** Multi-document YAML for the inject tests: an opted-in Deployment, a Service, an opted-in CronJob, a Pod that did not opt in. */
export const MANIFESTS = `# Shop front end
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web # the app
  namespace: shop
spec:
  replicas: 2
  template:
    metadata:
      labels: {app: web}
      annotations:
        config-reloader.io/inject: "true"
        config-reloader.io/reload-url: http://127.0.0.1:8080/-/reload
    spec:
      containers:
        - name: web # serves the shop
          image: example/web:1
          volumeMounts:
            - {name: config, mountPath: /etc/web}
      volumes:
        - name: config
          configMap:
            name: web-config
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
    - port: 80 # http
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: report
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        metadata:
          annotations:
            config-reloader.io/inject: "true"
        spec:
          restartPolicy: OnFailure
          containers:
            - name: report
              image: example/report:1
              volumeMounts: [{name: creds, mountPath: /creds}]
          volumes:
            - name: creds
              secret: {secretName: report-creds}
---
apiVersion: v1
kind: Pod
metadata:
  name: not-opted-in
spec:
  containers:
    - name: app
      image: example/app:1
      volumeMounts: [{name: c, mountPath: /c}]
  volumes:
    - name: c
      configMap: {name: c}
`;
