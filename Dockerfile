# The service image: `profiles` with the runtime dependencies only (no dev or embedded extras).
#   docker build -t customer-profiles .
#   docker run --rm -e DATABASE_URL=... -e REDIS_URL=... customer-profiles migrate
#   docker run --rm -p 8000:8000 -e DATABASE_URL=... -e REDIS_URL=... customer-profiles
#   docker run --rm -e DATABASE_URL=... -e REDIS_URL=... customer-profiles project

# Build a wheel from the sources, so the final image holds no source tree and no build tools.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY domain/ domain/
COPY projections/ projections/
COPY api/ api/
COPY adapters/ adapters/
COPY migrations/ migrations/
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
COPY --from=build /wheels /tmp/wheels
# Every runtime dependency ships manylinux wheels (psycopg[binary], confluent-kafka, uvloop, ...):
# no compiler needed.
RUN pip install /tmp/wheels/*.whl && rm -rf /tmp/wheels \
    && groupadd --system --gid 10001 profiles \
    && useradd --system --uid 10001 --gid profiles --home-dir /home/profiles --create-home profiles
USER 10001:10001
WORKDIR /home/profiles

EXPOSE 8000
# slim has no curl. Any non-2xx answer or connection error makes urlopen raise: unhealthy.
# The migrate container serves no HTTP; docker-compose.yml disables it there. The projector
# serves /healthz with `project --port 8000`.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]

ENTRYPOINT ["profiles"]
CMD ["serve", "--role", "all"]
