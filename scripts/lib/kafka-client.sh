# shellcheck shell=bash
# scripts/lib/kafka-client.sh: a client config for Kafka's command-line tools
# (`scripts/kafka-broker tool … --command-config FILE`) from the STAMPEDE_KAFKA_* variables
# `scripts/stack env` prints. In authenticated mode a tool without it speaks PLAINTEXT to a
# SASL_SSL listener, reads the broker's TLS alert as a frame size and dies
# (OutOfMemoryError) having done nothing.
#
#   kafka_client_props FILE [PROTOCOL [PASSWORD]]   writes the config, mode 0600 (it holds
#                  the password). PROTOCOL: STAMPEDE_KAFKA_SECURITY_PROTOCOL by default
#                  (PLAINTEXT when unset); TLS trusts STAMPEDE_KAFKA_CA_FILE; SASL logs in as
#                  STAMPEDE_KAFKA_SASL_USERNAME with PASSWORD (default
#                  STAMPEDE_KAFKA_SASL_PASSWORD). Short timeouts: a refusal fails in seconds.

kafka_client_props() {
  local file=$1 protocol=${2:-${STAMPEDE_KAFKA_SECURITY_PROTOCOL:-PLAINTEXT}}
  local password=${3:-${STAMPEDE_KAFKA_SASL_PASSWORD:-}}
  (umask 077 && {
    printf 'security.protocol=%s\nrequest.timeout.ms=4000\ndefault.api.timeout.ms=8000\n' "$protocol"
    case $protocol in *SSL)
      printf 'ssl.truststore.type=PEM\nssl.truststore.location=%s\n' "${STAMPEDE_KAFKA_CA_FILE:?}" ;;
    esac
    case $protocol in SASL_*)
      printf 'sasl.mechanism=%s\n' "${STAMPEDE_KAFKA_SASL_MECHANISM:?}"
      printf 'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="%s" password="%s";\n' \
        "${STAMPEDE_KAFKA_SASL_USERNAME:?}" "$password" ;;
    esac
  } >"$file")
}
