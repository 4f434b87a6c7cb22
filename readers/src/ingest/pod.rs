//! Kubernetes pod names to service names, shared by the Nezha readers and dataset adapters.
//!
//! Telemetry from Kubernetes often names the pod (`ts-travel-service-64469b5b48-25zj6`) where the
//! analysis needs the service (`ts-travel-service`), so the generated suffixes are stripped.

/// Characters Kubernetes uses in generated names (`rand.SafeEncodeString`: no vowels, no 0/1/3),
/// so real words such as `processor` are never mistaken for a hash.
fn is_generated(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len())
        && (s.bytes().all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)) || s.bytes().all(|b| b.is_ascii_digit()))
}

/// The service of a pod: strips a trailing `-<5 chars>` pod suffix, then a trailing
/// `-<6..10 chars>` ReplicaSet hash (`ts-travel-service-64469b5b48-25zj6` → `ts-travel-service`,
/// DaemonSet `agent-x7k2p` → `agent`). Names without them come back unchanged (trimmed).
pub fn pod_to_service(pod: &str) -> String {
    let mut name = pod.trim();
    if let Some((head, tail)) = name.rsplit_once('-') {
        if !head.is_empty() && is_generated(tail, 5, 5) {
            name = head;
        }
    }
    if let Some((head, tail)) = name.rsplit_once('-') {
        if !head.is_empty() && is_generated(tail, 6, 10) {
            name = head;
        }
    }
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::pod_to_service;

    #[test]
    fn strips_replicaset_hash_and_pod_suffix() {
        assert_eq!(pod_to_service("ts-travel-service-64469b5b48-25zj6"), "ts-travel-service");
        assert_eq!(pod_to_service("ts-gateway-service-6f6cfc45b-h5m2n"), "ts-gateway-service");
        assert_eq!(pod_to_service("ts-food-service-f5756978c-k8vqf"), "ts-food-service");
        assert_eq!(pod_to_service("frontend-7d4f8b9c6d-x2x9z"), "frontend");
        assert_eq!(pod_to_service("ts-travel-service-64469b5b48"), "ts-travel-service");
        assert_eq!(pod_to_service("node-exporter-x7k2p"), "node-exporter");
    }

    #[test]
    fn keeps_names_without_hashes() {
        for name in ["carts-db", "payment-processor", "redis-0", "checkout", "", "-", "a-", "-bcdfg", "ts-user-service"]
        {
            assert_eq!(pod_to_service(name), name.trim(), "{name}");
        }
    }
}
