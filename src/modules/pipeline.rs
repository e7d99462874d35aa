//! The chain runner: a webhook's `module` or `chain` + `chain-config`, built once, run per
//! delivery.
//!
//! - `sequential` runs the steps in order and stops at the first failure of a required step,
//!   unless `continue_on_error` (then the remaining steps still run).
//! - `parallel` runs every step at once.
//!
//! Either way the pipeline succeeds only when every required step succeeded (a chain item
//! may say `"required": false` for a best-effort step), so a message is acked only then and
//! otherwise redelivered; destinations see it at least once. Each step retries by its own
//! `retry` block, or the webhook's, and is bounded by `chain-config.timeout`.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::registry::{self, BuildContext, ModuleSpec};
use super::retry::RetryPolicy;
use super::{Delivery, Module, ModuleError};
use crate::config::{ConfigError, join_path};

/// The longest chain the original allows.
pub const MAX_CHAIN_LEN: usize = 20;

/// How the steps of a chain run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Execution {
    /// One after the other.
    #[default]
    Sequential,
    /// All at once.
    Parallel,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainConfig {
    #[serde(default)]
    execution: Execution,
    #[serde(default = "default_continue")]
    continue_on_error: bool,
    #[serde(default = "default_timeout")]
    timeout: f64,
}

fn default_continue() -> bool {
    true
}
fn default_timeout() -> f64 {
    30.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainItem {
    module: String,
    #[serde(default)]
    connection: Option<String>,
    #[serde(default, rename = "module-config")]
    module_config: Option<Value>,
    #[serde(default)]
    retry: Option<Value>,
    #[serde(default = "default_required")]
    required: bool,
}

fn default_required() -> bool {
    true
}

/// The module keys of one webhooks.json entry (the original's names).
#[derive(Debug, Clone, Default)]
pub struct PipelineSpec {
    /// `module`.
    pub module: Option<String>,
    /// `module-config`.
    pub module_config: Option<Value>,
    /// `connection`.
    pub connection: Option<String>,
    /// `chain`.
    pub chain: Option<Value>,
    /// `chain-config`.
    pub chain_config: Option<Value>,
    /// `retry`.
    pub retry: Option<Value>,
    /// The original's top-level module keys (`topic`, `queue_name`, `redis`).
    pub legacy: Map<String, Value>,
}

/// One module of a pipeline.
#[derive(Debug)]
struct Step {
    label: String,
    module: Arc<dyn Module>,
    retry: RetryPolicy,
    required: bool,
}

/// A webhook's modules, ready to run.
#[derive(Debug)]
pub struct Pipeline {
    steps: Vec<Step>,
    execution: Execution,
    continue_on_error: bool,
    timeout: Duration,
}

impl Pipeline {
    /// Builds the pipeline of webhook `id` of `file`; every problem is reported with its path.
    pub fn build(
        file: &str,
        id: &str,
        spec: &PipelineSpec,
        ctx: &BuildContext,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let err =
            |path: &str, message: String| ConfigError::new(file, join_path(id, path), message);

        let default_retry = match &spec.retry {
            None => RetryPolicy::default(),
            Some(v) => RetryPolicy::from_json(v).unwrap_or_else(|e| {
                errors.push(err("retry", e));
                RetryPolicy::default()
            }),
        };

        let chain_config: ChainConfig = match &spec.chain_config {
            Some(_) if spec.chain.is_none() => {
                errors.push(err("chain-config", "`chain-config` needs a `chain`".into()));
                None
            }
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| {
                    errors.push(err(
                        "chain-config",
                        crate::config::explain_serde_error(&e.to_string()),
                    ))
                })
                .ok(),
            None => None,
        }
        .unwrap_or(ChainConfig {
            execution: Execution::Sequential,
            continue_on_error: default_continue(),
            timeout: default_timeout(),
        });
        if !(chain_config.timeout > 0.0 && chain_config.timeout <= 3600.0) {
            errors.push(err(
                "chain-config.timeout",
                "must be between 0 and 3600 seconds".into(),
            ));
        }

        let items: Vec<(String, ChainItem)> = match (&spec.module, &spec.chain) {
            (Some(_), Some(_)) => {
                errors.push(err(
                    "chain",
                    "use either `module` or `chain`, not both".into(),
                ));
                Vec::new()
            }
            (None, None) => {
                errors.push(ConfigError::new(file, id, "needs a `module` or a `chain`"));
                Vec::new()
            }
            (Some(module), None) => vec![(
                "module".to_owned(),
                ChainItem {
                    module: module.clone(),
                    connection: spec.connection.clone(),
                    module_config: spec.module_config.clone(),
                    retry: None,
                    required: true,
                },
            )],
            (None, Some(chain)) => {
                if spec.module_config.is_some() || spec.connection.is_some() {
                    errors.push(err(
                        "chain",
                        "with a `chain`, `module-config` and `connection` go in each chain item"
                            .into(),
                    ));
                }
                chain_items(chain, &mut |path, m| errors.push(err(path, m)))
            }
        };

        let mut steps = Vec::new();
        for (path, item) in items {
            let retry = match &item.retry {
                None => default_retry.clone(),
                Some(v) => match RetryPolicy::from_json(v) {
                    Ok(r) => r,
                    Err(e) => {
                        errors.push(err(&join_path(&path, "retry"), e));
                        continue;
                    }
                },
            };
            let connection = match item.connection.as_deref() {
                None => None,
                Some(name) => match ctx.connections.get(name) {
                    Some(c) => Some(c),
                    None => {
                        let names: Vec<&str> = ctx.connections.names().collect();
                        let hint = match crate::config::nearest(name, &names) {
                            Some(near) => format!("; did you mean `{near}`?"),
                            None if names.is_empty() => "; connections.json defines none".into(),
                            None => format!("; defined: {}", names.join(", ")),
                        };
                        errors.push(err(
                            &join_path(&path, "connection"),
                            format!("no connection `{name}` in connections.json{hint}"),
                        ));
                        continue;
                    }
                },
            };
            let legacy = if path == "module" {
                &spec.legacy
            } else {
                &Map::new()
            };
            let config = registry::merge_legacy_keys(item.module_config.as_ref(), legacy);
            if item.module_config.as_ref().is_some_and(|v| !v.is_object()) {
                errors.push(err(
                    &join_path(&path, "module-config"),
                    "must be an object".into(),
                ));
                continue;
            }
            let module_spec = ModuleSpec {
                webhook_id: id,
                name: &item.module,
                config: &config,
                connection,
            };
            match registry::build(&module_spec, ctx) {
                Ok(module) => steps.push(Step {
                    label: item.module.clone(),
                    module,
                    retry,
                    required: item.required,
                }),
                Err(e) => {
                    let at = if path == "module" {
                        "module".to_owned()
                    } else {
                        path.clone()
                    };
                    errors.push(err(&at, e));
                }
            }
        }

        if errors.is_empty() {
            Ok(Self {
                steps,
                execution: chain_config.execution,
                continue_on_error: chain_config.continue_on_error,
                timeout: Duration::from_secs_f64(chain_config.timeout),
            })
        } else {
            Err(errors)
        }
    }

    /// A pipeline of ready-made modules (for tests and embedding).
    pub fn from_modules(
        modules: Vec<(String, Arc<dyn Module>, bool)>,
        execution: Execution,
        continue_on_error: bool,
        timeout: Duration,
    ) -> Self {
        Self {
            steps: modules
                .into_iter()
                .map(|(label, module, required)| Step {
                    label,
                    module,
                    retry: RetryPolicy::default(),
                    required,
                })
                .collect(),
            execution,
            continue_on_error,
            timeout,
        }
    }

    /// The module names, in order.
    pub fn labels(&self) -> Vec<&str> {
        self.steps.iter().map(|s| s.label.as_str()).collect()
    }

    /// Runs every step for one delivery; `Ok` only when every required step succeeded.
    pub async fn run(&self, delivery: &Delivery) -> Result<(), ModuleError> {
        let mut failures = Vec::new();
        match self.execution {
            Execution::Sequential => {
                for step in &self.steps {
                    if let Err(e) = self.run_step(step, delivery).await
                        && step.required
                    {
                        failures.push(e);
                        if !self.continue_on_error {
                            break;
                        }
                    }
                }
            }
            Execution::Parallel => {
                let results = futures_util::future::join_all(
                    self.steps.iter().map(|step| self.run_step(step, delivery)),
                )
                .await;
                failures.extend(
                    self.steps
                        .iter()
                        .zip(results)
                        .filter(|(step, _)| step.required)
                        .filter_map(|(_, r)| r.err()),
                );
            }
        }
        combine(failures)
    }

    async fn run_step(&self, step: &Step, delivery: &Delivery) -> Result<(), ModuleError> {
        let attempts = step.retry.run(|| step.module.deliver(delivery));
        let result = match tokio::time::timeout(self.timeout, attempts).await {
            Ok(result) => result,
            Err(_) => Err(ModuleError::Retryable(format!(
                "timed out after {:?}",
                self.timeout
            ))),
        }
        .map_err(|e| e.context(&step.label));
        if let Err(e) = &result {
            tracing::warn!(
                webhook_id = %delivery.webhook_id,
                message_id = %delivery.message_id,
                module = %step.label,
                required = step.required,
                retryable = e.is_retryable(),
                error = %e,
                "module failed"
            );
        }
        result
    }
}

/// Reads the `chain` array into items with their paths.
fn chain_items(chain: &Value, report: &mut dyn FnMut(&str, String)) -> Vec<(String, ChainItem)> {
    let Value::Array(items) = chain else {
        report("chain", "must be a list of module names or objects".into());
        return Vec::new();
    };
    if items.is_empty() || items.len() > MAX_CHAIN_LEN {
        report("chain", format!("must have 1 to {MAX_CHAIN_LEN} items"));
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("chain.{i}");
        let parsed = match item {
            Value::String(name) => Ok(ChainItem {
                module: name.clone(),
                connection: None,
                module_config: None,
                retry: None,
                required: true,
            }),
            other => serde_json::from_value::<ChainItem>(other.clone())
                .map_err(|e| crate::config::explain_serde_error(&e.to_string())),
        };
        match parsed {
            Ok(item) => out.push((path, item)),
            Err(e) => report(&path, e),
        }
    }
    out
}

/// One error from several failures: retryable when any of them is.
fn combine(failures: Vec<ModuleError>) -> Result<(), ModuleError> {
    if failures.is_empty() {
        return Ok(());
    }
    let retryable = failures.iter().any(ModuleError::is_retryable);
    let text = failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Err(if retryable {
        ModuleError::Retryable(text)
    } else {
        ModuleError::Rejected(text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::tests_support::delivery;
    use crate::modules::{Connections, NetworkPolicy};
    use async_trait::async_trait;
    use serde_json::json;
    use std::sync::Mutex;

    #[derive(Debug)]
    struct Fake {
        name: &'static str,
        result: Result<(), ModuleError>,
        calls: Arc<Mutex<Vec<&'static str>>>,
    }

    #[async_trait]
    impl Module for Fake {
        async fn deliver(&self, _: &Delivery) -> Result<(), ModuleError> {
            self.calls.lock().unwrap().push(self.name);
            self.result.clone()
        }
    }

    fn pipeline(
        steps: &[(&'static str, Result<(), ModuleError>, bool)],
        execution: Execution,
        continue_on_error: bool,
    ) -> (Pipeline, Arc<Mutex<Vec<&'static str>>>) {
        let calls: Arc<Mutex<Vec<&'static str>>> = Arc::default();
        let modules = steps
            .iter()
            .map(|(name, result, required)| {
                let module: Arc<dyn Module> = Arc::new(Fake {
                    name,
                    result: result.clone(),
                    calls: calls.clone(),
                });
                (name.to_string(), module, *required)
            })
            .collect();
        let p = Pipeline::from_modules(
            modules,
            execution,
            continue_on_error,
            Duration::from_secs(5),
        );
        (p, calls)
    }

    fn down() -> Result<(), ModuleError> {
        Err(ModuleError::retryable("down"))
    }

    #[tokio::test]
    async fn sequential_stops_at_the_first_failure() {
        let (p, calls) = pipeline(
            &[
                ("a", Ok(()), true),
                ("b", down(), true),
                ("c", Ok(()), true),
            ],
            Execution::Sequential,
            false,
        );
        let err = p.run(&delivery(b"{}")).await.unwrap_err();
        assert!(err.is_retryable());
        assert_eq!(err.to_string(), "b: down");
        assert_eq!(*calls.lock().unwrap(), ["a", "b"]);
    }

    #[tokio::test]
    async fn continue_on_error_runs_the_rest_but_still_fails() {
        let (p, calls) = pipeline(
            &[("a", down(), true), ("b", Ok(()), true)],
            Execution::Sequential,
            true,
        );
        assert!(p.run(&delivery(b"{}")).await.is_err());
        assert_eq!(*calls.lock().unwrap(), ["a", "b"]);
    }

    #[tokio::test]
    async fn parallel_runs_all_and_succeeds_only_when_required_steps_do() {
        let (p, calls) = pipeline(
            &[
                ("a", Ok(()), true),
                ("b", Err(ModuleError::rejected("no")), true),
                ("c", Ok(()), true),
            ],
            Execution::Parallel,
            false,
        );
        let err = p.run(&delivery(b"{}")).await.unwrap_err();
        assert!(!err.is_retryable());
        assert_eq!(calls.lock().unwrap().len(), 3);

        let (p, _) = pipeline(
            &[("a", Ok(()), true), ("optional", down(), false)],
            Execution::Parallel,
            false,
        );
        assert!(p.run(&delivery(b"{}")).await.is_ok());
    }

    fn ctx() -> BuildContext {
        BuildContext {
            connections: Arc::new(Connections::default()),
            network: NetworkPolicy::Tunnel,
        }
    }

    #[test]
    fn config_errors_name_the_path() {
        let spec = PipelineSpec {
            chain: Some(
                json!(["log", {"module": "log", "connection": "nope"}, {"module": "logs"}]),
            ),
            chain_config: Some(json!({"execution": "sideways"})),
            ..PipelineSpec::default()
        };
        let errors = Pipeline::build("webhooks.json", "orders", &spec, &ctx()).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let joined = text.join("\n");
        assert!(joined.contains("orders.chain-config"), "{joined}");
        assert!(joined.contains("orders.chain.1.connection"), "{joined}");
        assert!(joined.contains("did you mean `log`"), "{joined}");
    }

    #[test]
    fn a_chain_of_names_builds() {
        let spec = PipelineSpec {
            chain: Some(
                json!(["log", {"module": "log", "module-config": {"pretty_print": true}, "retry": {"enabled": true}}]),
            ),
            chain_config: Some(
                json!({"execution": "parallel", "continue_on_error": false, "timeout": 5}),
            ),
            ..PipelineSpec::default()
        };
        let p = Pipeline::build("webhooks.json", "orders", &spec, &ctx()).unwrap();
        assert_eq!(p.labels(), ["log", "log"]);
        assert_eq!(p.execution, Execution::Parallel);
    }
}
