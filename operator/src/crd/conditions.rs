//! The condition vocabulary of a campaign's status: every condition type and every reason
//! the operator writes, as enums (the status stores their `as_str()`).

/// Declares a string enum with `as_str()`, `ALL`, `Display` and `Into<&'static str>`.
macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $v,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &[Self] = &[$(Self::$v),+];

            /// The name as written in the status.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$v => stringify!($v),)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl From<$name> for &'static str {
            fn from(v: $name) -> Self {
                v.as_str()
            }
        }
    };
}
pub(crate) use string_enum;

string_enum! {
    /// The type of a status condition, in the order the status lists them.
    ConditionType {
        /// Stock, topics and workloads are in place.
        Ready,
        /// The campaign's stock and window are in Redis.
        RedisProvisioned,
        /// The campaign topic and its dead-letter topic exist.
        KafkaProvisioned,
        /// Every wanted issuer and writer pod is available.
        WorkloadsReady,
        /// The PrometheusRule is applied (advisory).
        AlertsConfigured,
        /// Every load test's latest run passed (only with load tests).
        LoadTestsPassed,
    }
}

string_enum! {
    /// Why a condition has its status.
    Reason {
        /// `Ready` True.
        Ready,
        /// Redis or Kafka provisioned.
        Provisioned,
        /// Every wanted pod is available.
        Available,
        /// The PrometheusRule is applied.
        RuleApplied,
        /// Every load test passed.
        Passed,
        /// A Secret a campaign names is missing or unusable.
        SecretUnavailable,
        /// Redis waits until the campaign topic exists.
        WaitingForKafka,
        /// Redis cannot be reached.
        RedisUnavailable,
        /// `spec.stock` is below what Redis already holds.
        StockDecreaseRefused,
        /// Redis holds the campaign otherwise than the spec asks (another shard count, a
        /// bucket missing or left by a provisioning cut short): waits for a change.
        RedisRefused,
        /// Kafka cannot be reached.
        KafkaUnavailable,
        /// `spec.kafka.partitions` is below what the topic has.
        PartitionDecreaseRefused,
        /// The Deployments cannot be read.
        WorkloadsUnreadable,
        /// Pods are not available yet.
        WaitingForPods,
        /// Pods serve, but not enough of them run the current spec yet (a rollout under
        /// way, or stuck on a pod that cannot start).
        RollingOut,
        /// The PrometheusRule CRD is not installed.
        PrometheusRuleCRDMissing,
        /// Applying the PrometheusRule failed.
        ApplyFailed,
        /// A load test's thresholds failed.
        ThresholdsFailed,
        /// A load test could not run or crashed.
        LoadTestError,
        /// Load tests wait for stock, topics and pods.
        WaitingForWorkloads,
        /// A load test is running.
        Running,
        /// The spec cannot be carried out.
        InvalidSpec,
        /// The operator's ServiceAccount may not do something it needs.
        Forbidden,
    }
}

string_enum! {
    /// The status of a condition.
    ConditionStatus {
        /// The condition holds.
        True,
        /// It does not; the reason says why.
        False,
        /// Not known (the operator never writes it; other writers may).
        Unknown,
    }
}

string_enum! {
    /// Where a load-test run stands (`status.loadTests[].phase`).
    RunPhase {
        /// No segment finished yet.
        Pending,
        /// Some segments finished.
        Running,
        /// Every segment finished; the run has a verdict.
        Finished,
    }
}

string_enum! {
    /// The verdict of a finished load-test run (`status.loadTests[].verdict`).
    Verdict {
        /// Every segment ran and every threshold held.
        Passed,
        /// k6 reported failed thresholds.
        ThresholdsFailed,
        /// A segment crashed or left no readable summary.
        Error,
    }
}

impl Verdict {
    /// The verdict a status records, if it is one of these.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s)
    }
}

impl Reason {
    /// A backing service (or the Secret naming it) could not be reached: retried with
    /// backoff rather than on the resync.
    pub fn is_unavailable(self) -> bool {
        matches!(
            self,
            Self::SecretUnavailable | Self::RedisUnavailable | Self::KafkaUnavailable
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CRD's documentation is written by hand; it must name every variant of the
    /// vocabularies its fields take.
    #[test]
    fn the_crd_documents_every_variant() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(crate::crd::CouponCampaign::crd()).unwrap();
        let status = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
            ["properties"];
        let condition = &status["conditions"]["items"]["properties"];
        let run = &status["loadTests"]["items"]["properties"];
        let doc = |v: &serde_json::Value| v["description"].as_str().unwrap().to_owned();
        fn names<T: Copy + Into<&'static str>>(all: &[T]) -> Vec<&'static str> {
            all.iter().map(|&v| v.into()).collect()
        }
        let cases = [
            (doc(&status["conditions"]), names(ConditionType::ALL)),
            (doc(&condition["status"]), names(ConditionStatus::ALL)),
            (doc(&run["phase"]), names(RunPhase::ALL)),
            (doc(&run["verdict"]), names(Verdict::ALL)),
        ];
        for (doc, variants) in cases {
            for v in variants {
                assert!(doc.contains(v), "{v} missing from {doc:?}");
            }
        }
        let column = format!(r#"@.type=="{}""#, ConditionType::LoadTestsPassed);
        let columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .unwrap();
        assert!(
            columns
                .iter()
                .any(|c| c["jsonPath"].as_str().unwrap().contains(&column)),
            "the Tests column reads {column}"
        );
    }

    #[test]
    fn names_are_the_variants() {
        assert_eq!(ConditionType::Ready.as_str(), "Ready");
        assert_eq!(
            Reason::PrometheusRuleCRDMissing.to_string(),
            "PrometheusRuleCRDMissing"
        );
        assert!(Reason::SecretUnavailable.is_unavailable());
        assert!(!Reason::WaitingForKafka.is_unavailable());
    }
}
