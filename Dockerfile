# The gateway as a container: docker compose up (see README).
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY mqttproxy ./mqttproxy
COPY web ./web
RUN pip install --no-cache-dir '.[fast]' && useradd --system --uid 10001 --home-dir /data mqttproxy \
    && mkdir /data && chown mqttproxy /data

USER mqttproxy
VOLUME /data
EXPOSE 1883 3000
CMD ["mqttproxy", "run", "--config", "/etc/mqttproxy/proxy.toml", "--data-dir", "/data"]
