#!/usr/bin/env bash
# Apache Kafka (KRaft) server jars for the integration tests and scripts/kafka, fetched from Maven
# Central with mvn and cached in $OPSAGENT_CACHE/kafka/<version>/lib. Idempotent: a complete lib
# dir (marked by .complete) is reused; KAFKA_VERSION overrides the pinned release.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/apt.sh
. "$here/../lib/apt.sh"

KAFKA_VERSION=${KAFKA_VERSION:-4.1.1}
SCALA_VERSION=2.13
LOG4J_VERSION=2.24.3
CACHE=${OPSAGENT_CACHE:-$HOME/.cache/opsagent}
dest="$CACHE/kafka/$KAFKA_VERSION"

# Needed to run the broker even when the jars are cached; scripts/kafka --ssl (the tests'
# session broker) makes its certificates with openssl.
command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
command -v openssl >/dev/null 2>&1 || apt_install openssl

if [ -f "$dest/.complete" ]; then
  ln -sfn "$KAFKA_VERSION" "$CACHE/kafka/current"
  echo "kafka $KAFKA_VERSION: cached in $dest" >&2
  exit 0
fi

command -v mvn >/dev/null 2>&1 || apt_install maven

mkdir -p "$dest"
work=$(mktemp -d "$dest/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT

# A throwaway pom whose runtime dependencies are exactly what a single-node broker needs:
# the broker (kafka_2.13 brings server, raft, metadata, storage, coordinators and StorageTool)
# and a log4j2 backend for its slf4j 1.7 logging (Kafka 4.x ships log4j2 + log4j-slf4j-impl).
cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>opsagent.provision</groupId>
  <artifactId>kafka-server-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_${SCALA_VERSION}</artifactId>
      <version>${KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>${LOG4J_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>${LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
EOF

echo "kafka $KAFKA_VERSION: fetching server jars with mvn (first run only)" >&2
if ! mvn -B -Dstyle.color=never -f "$work/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$work/lib" >"$work/mvn.log" 2>&1; then
  tail -n 40 "$work/mvn.log" >&2
  echo "kafka $KAFKA_VERSION: mvn could not fetch the jars" >&2
  exit 1
fi

# The broker and its storage tool must both be present, else the cache is not usable.
ls "$work/lib"/kafka_${SCALA_VERSION}-"$KAFKA_VERSION".jar >/dev/null
ls "$work/lib"/kafka-server-"$KAFKA_VERSION".jar >/dev/null

rm -rf "$dest/lib"
mv "$work/lib" "$dest/lib"
echo "$KAFKA_VERSION" >"$dest/.complete"
ln -sfn "$KAFKA_VERSION" "$CACHE/kafka/current"
echo "kafka $KAFKA_VERSION: installed in $dest/lib ($(ls "$dest/lib" | wc -l) jars)" >&2
