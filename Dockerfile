# One image for every part; the command picks the part (see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY registry ./registry
COPY livecheck ./livecheck
COPY migrations ./migrations
RUN pip install --no-cache-dir -e .
USER nobody
ENTRYPOINT ["avatar-registry"]
