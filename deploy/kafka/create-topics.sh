#!/bin/sh
# Creates Butterfly's topics replicated across the cluster, before `butterfly topics` runs.
#
# `butterfly topics` creates a missing topic with replication factor 1 (the embedded dev
# broker is one node). On this cluster that would keep each partition on one broker and,
# with min.insync.replicas=2 and the roles' acks=all, refuse every write. So the topics are
# made here first, with the cluster's replication; `butterfly topics` then finds them all and
# creates nothing. tests/unit/test_deploy.py checks these names against schemas/topics.py.
set -eu

bootstrap="${KAFKA_BOOTSTRAP_SERVERS:?set KAFKA_BOOTSTRAP_SERVERS}"
partitions="${BUTTERFLY_PARTITIONS:?set BUTTERFLY_PARTITIONS}"
prefix="${BUTTERFLY_TOPIC_PREFIX:-butterfly.}"
replicas="${KAFKA_REPLICATION_FACTOR:-3}"
kafka_topics="${KAFKA_HOME:-/opt/kafka}/bin/kafka-topics.sh"

create() {
    name="$prefix$1"
    shift
    "$kafka_topics" --bootstrap-server "$bootstrap" --create --if-not-exists \
        --topic "$name" --partitions "$partitions" --replication-factor "$replicas" "$@"
}

# Commands, the partner's feed and dead letters: the broker's default retention.
ordinary() {
    create "$1"
}

# Event topics are the system of record: kept for ever.
kept_forever() {
    create "$1" --config retention.ms=-1 --config retention.bytes=-1
}

ordinary registration.commands
kept_forever registration.events
ordinary lodging.commands
kept_forever lodging.events
ordinary partner.lodging.events
ordinary accounts.commands
kept_forever accounts.events
ordinary dead-letter

echo "topics ready under ${prefix}: $partitions partitions, replication $replicas"
