# The image examples/kubernetes/ and examples/airflow/ run: ml-connector installed as README says (pip install .),
# on a slim Python base, run as an unprivileged user. Build: docker build -t mlconnector:0.1.0 .
# Configuration, secrets and state come from outside (docs/operations.md, "Containers and schedulers"): a tenant's
# connections.toml mounted at /etc/mlconnector/tenants/NAME/, secrets and MLCONNECTOR_STATE_URL in the environment.
FROM python:3.11-slim AS build
RUN python -m venv /opt/mlconnector
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mlconnector ./mlconnector
RUN /opt/mlconnector/bin/pip install --no-cache-dir .

FROM python:3.11-slim
COPY --from=build /opt/mlconnector /opt/mlconnector
# A fixed uid, so a pod's securityContext (runAsUser: 10001, runAsNonRoot) matches the image.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/mlconnector mlconnector
ENV PATH=/opt/mlconnector/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MLCONNECTOR_LOG_FORMAT=json
USER 10001
WORKDIR /home/mlconnector
EXPOSE 8765
ENTRYPOINT ["mlconnector"]
CMD ["--help"]
