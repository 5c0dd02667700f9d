#!/bin/bash
# The entrypoint of each compose Kafka node (NODE_ID 1, 2 or 3): the administrator's SCRAM user is created when the storage is first formatted
# (kafka-storage format --add-scram), as the local broker does; the other principals are granted by the `access`
# service. The password comes from the mounted secret, never from the environment or the command line.
set -euo pipefail
password=$(tr -d '\n' < /run/secrets/admin)
config=/tmp/server.properties
sed -e "s|@ADMIN_PASSWORD@|${password}|" -e "s|@NODE_ID@|${NODE_ID}|g" /opt/signalements/server.properties > "$config"
chmod 600 "$config"
# For the healthcheck (kafka-broker-api-versions.sh --command-config): the administrator over TLS.
cat > /tmp/client.properties <<PROPERTIES
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${password}";
ssl.truststore.type=PEM
ssl.truststore.location=/run/secrets/ca.crt
PROPERTIES
chmod 600 /tmp/client.properties
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
    # The quorum is static (controller.quorum.voters): every node formatted with the same cluster id.
    /opt/kafka/bin/kafka-storage.sh format -t "$CLUSTER_ID" -c "$config" \
        --add-scram "SCRAM-SHA-512=[name=admin,password=${password}]"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$config"
