//! The stacks the engine benchmarks deploy.

use crate::env::IMAGE;

/// How many services [`ten_service_stack`] has.
pub const SERVICES: usize = 10;

/// Dependencies (`service_healthy`): three chains and a service that waits for all of them.
/// The longest chain is s01 → s04 → s05 → s06 → s10: five services healthy one after another.
pub const DEPENDS: [(usize, &[usize]); SERVICES] = [
    (1, &[]),
    (2, &[]),
    (3, &[]),
    (4, &[1]),
    (5, &[4]),
    (6, &[5]),
    (7, &[2]),
    (8, &[7]),
    (9, &[3]),
    (10, &[6, 8, 9]),
];

/// The stack's compose file: no top-level `name:` (docker-compose 1.29 refuses it).
pub fn ten_service_stack() -> String {
    let mut file = String::from("services:\n");
    for (service, deps) in DEPENDS {
        file.push_str(&format!(
            r#"  s{service:02}:
    image: {IMAGE}
    command: ["web", "--port", "8080"]
    healthcheck:
      test: ["CMD", "/demo-app", "probe", "http://127.0.0.1:8080/healthz"]
      interval: 1s
      timeout: 2s
      retries: 3
"#
        ));
        if !deps.is_empty() {
            file.push_str("    depends_on:\n");
            for dep in deps {
                file.push_str(&format!(
                    "      s{dep:02}:\n        condition: service_healthy\n"
                ));
            }
        }
    }
    file
}
