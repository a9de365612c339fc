# jpixd in a container: slim, non-root, healthy only when /healthz answers.
# Build: docker build -t jpixd .   Run: docker run -p 8080:8080 -v jpixd:/var/lib/jpixd jpixd
FROM python:3.11-slim-bookworm

# tzdata: mail and delivery windows are in Asia/Tokyo, whatever the host says.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tzdata \
 && rm -rf /var/lib/apt/lists/*
ENV TZ=Asia/Tokyo \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1

RUN useradd --system --uid 10001 --home-dir /var/lib/jpixd --shell /usr/sbin/nologin jpixd \
 && mkdir -p /var/lib/jpixd /etc/jpixd && chown jpixd:jpixd /var/lib/jpixd

WORKDIR /opt/jpixd
COPY pyproject.toml README.md ./
COPY jpixd ./jpixd
# The same install step `make install` runs, without the dev extras.
RUN python -m pip install --no-compile . && rm -rf /opt/jpixd/jpixd

COPY etc/jpixd.toml /etc/jpixd/jpixd.toml
USER jpixd
WORKDIR /var/lib/jpixd
VOLUME ["/var/lib/jpixd"]
EXPOSE 8080

# The container's config must listen on 0.0.0.0:8080 for EXPOSE to mean anything;
# mount your own /etc/jpixd/jpixd.toml (http.listen = "0.0.0.0:8080").
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"

STOPSIGNAL SIGTERM
ENTRYPOINT ["jpixd"]
CMD ["run", "--config", "/etc/jpixd/jpixd.toml"]
