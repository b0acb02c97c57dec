# chargeamps-bridge: small image, non-root, state in /data.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CHARGEAMPS_STATE_DIR=/data
# A fixed uid so a bind-mounted /data can be chowned to it on the host.
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin bridge \
    && mkdir -p /data && chown bridge:bridge /data && chmod 0700 /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER bridge
WORKDIR /data
VOLUME /data
# `chargeamps-bridge run` by default; compose's demo profile runs `simulate-cloud` from the same image.
ENTRYPOINT ["chargeamps-bridge"]
CMD ["run"]
