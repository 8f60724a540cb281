# Go: Debian's toolchain.
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends golang-go build-essential && rm -rf /var/lib/apt/lists/*
