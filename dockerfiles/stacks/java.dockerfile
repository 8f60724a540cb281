# Java: Debian's JDK and Maven.
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends default-jdk-headless maven && rm -rf /var/lib/apt/lists/*
