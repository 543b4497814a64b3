//! The chain's answers to command-socket requests (GetChain, SetChain,
//! SetHopBypass) and their protobuf mapping: the chain, its hops' status
//! and the last rejected update as `v1` messages.

use super::*;

impl ChainControl {
    /// The answer to a dry run: the validation, nothing applied.
    fn dry_run_answer(&self, validation: v1::ValidationResult) -> v1::dataplane_response::Response {
        v1::dataplane_response::Response::SetChain(v1::SetChainResponse {
            validation: Some(validation),
            accepted: false,
            generation: self.desired.generation,
            chain: Some(self.chain()),
        })
    }

    /// Refuses a spec (`why`: which check refused it): logs it escaped,
    /// keeps a bounded summary in `last_rejected` and answers
    /// INVALID_ARGUMENT with the validation. Nothing is applied.
    fn reject_spec(
        &mut self,
        p: v1::ChainSpec,
        msg: &str,
        validation: v1::ValidationResult,
        why: &str,
    ) -> v1::dataplane_response::Response {
        warn!(errors = %limits::escape(msg), why, "chain update rejected");
        self.last_rejected = Some(bounded_rejection(
            p,
            None,
            "InvalidSpec",
            msg,
            validation.errors.clone(),
        ));
        v1::dataplane_response::Response::Error(v1::DataplaneError {
            code: code::INVALID_ARGUMENT,
            message: format!("invalid chain spec: {msg}"),
            validation: Some(validation),
        })
    }

    fn record_rejected(
        &mut self,
        s: &ChainSpec,
        generation: Option<u64>,
        reason: &str,
        message: &str,
        errors: &[Issue],
    ) {
        self.last_rejected = Some(bounded_rejection(
            s.to_proto(),
            generation,
            reason,
            message,
            errors.iter().map(Issue::to_proto).collect(),
        ));
    }

    fn hop_status(&self, h: &HopRecord) -> v1::HopStatus {
        let manual = h.shared.manual_bypass();
        let health = h.shared.health();
        let state = if manual {
            v1::HopState::BypassedManual
        } else if h.ports.is_none() {
            v1::HopState::Down
        } else {
            match health {
                Health::Up => v1::HopState::Up,
                Health::Down => v1::HopState::Down,
                Health::Unknown => v1::HopState::Unspecified,
            }
        };
        let traffic = match (LayoutHop {
            shared: h.shared.clone(),
            ports: h.ports,
            removing: false,
        })
        .traffic()
        {
            Traffic::Through => v1::HopTraffic::ThroughTool,
            Traffic::Bypass => v1::HopTraffic::Bypassed,
            Traffic::Drop => v1::HopTraffic::Dropped,
        };
        v1::HopStatus {
            name: h.spec.name.clone(),
            state: state.into(),
            traffic: traffic.into(),
            on_failure: h.shared.on_failure().to_proto().into(),
            manual_bypass: manual,
            tool_healthy: h.ports.is_some() && health == Health::Up,
            last_transition_at: ts(h.last_transition_unix_ns),
            reason: h.reason.clone(),
            message: h.message.clone(),
        }
    }

    /// The chain as the API shows it.
    pub fn chain(&self) -> v1::Chain {
        v1::Chain {
            spec: Some(self.desired.spec.to_proto()),
            generation: self.desired.generation,
            updated_at: ts(self.desired.updated_at_unix_ns),
            status: Some(v1::ChainStatus {
                observed_generation: self.applied.as_ref().map_or(0, |a| a.generation),
                applied_spec: self.applied.as_ref().map(|a| a.spec.to_proto()),
                applied_at: self.applied.as_ref().and_then(|a| ts(a.at_unix_ns)),
                hops: self.hops.iter().map(|h| self.hop_status(h)).collect(),
                last_rejected: self.last_rejected.clone(),
            }),
        }
    }

    /// Handles one command.
    pub(crate) fn handle(&mut self, req: v1::DataplaneRequest) -> v1::DataplaneResponse {
        use v1::dataplane_request::Request;
        use v1::dataplane_response::Response;
        let response = match req.request {
            None => error(code::INVALID_ARGUMENT, "empty request"),
            Some(Request::GetChain(_)) => Response::GetChain(v1::GetChainResponse {
                chain: Some(self.chain()),
            }),
            Some(Request::SetChain(r)) => self.set_chain(r),
            Some(Request::SetHopBypass(r)) => self.set_hop_bypass(r),
            // The command socket serves taps itself (see `Server::serve`).
            Some(Request::Tap(_)) => error(
                code::INTERNAL,
                "a tap request reached the chain's handler (a dataplane bug)",
            ),
        };
        v1::DataplaneResponse {
            response: Some(response),
        }
    }

    fn set_chain(&mut self, r: v1::SetChainRequest) -> v1::dataplane_response::Response {
        use v1::dataplane_response::Response;
        let Some(p) = r.spec else {
            return error(code::INVALID_ARGUMENT, "spec is required");
        };
        // Bounds first: an oversized spec is neither validated nor kept
        // whole (only a bounded summary of it, in `last_rejected`).
        let over = limits::check_spec(&p);
        if !over.is_empty() {
            let msg = over
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            let validation = v1::ValidationResult {
                valid: false,
                errors: over
                    .iter()
                    .map(|v| v1::ValidationIssue {
                        field: v.field.clone(),
                        message: v.message.clone(),
                    })
                    .collect(),
                warnings: Vec::new(),
            };
            if r.dry_run {
                return self.dry_run_answer(validation);
            }
            return self.reject_spec(p, &msg, validation, "over the request bounds");
        }
        if let Some(expected) = r.expected_generation {
            if expected != self.desired.generation {
                return error(
                    code::FAILED_PRECONDITION,
                    format!(
                        "the chain is at generation {}, not {expected}: read it again and retry",
                        self.desired.generation
                    ),
                );
            }
        }
        let (new, errors, warnings) = match ChainSpec::from_proto(&p) {
            Ok(s) => {
                let (e, w) = tapline_config::chain::validate(&s, &self.env);
                (s, e, w)
            }
            Err(e) => (ChainSpec::default(), e, Vec::new()),
        };
        let validation = v1::ValidationResult {
            valid: errors.is_empty(),
            errors: errors.iter().map(Issue::to_proto).collect(),
            warnings: warnings.iter().map(Issue::to_proto).collect(),
        };
        if r.dry_run {
            return self.dry_run_answer(validation);
        }
        if !errors.is_empty() {
            let msg = errors
                .iter()
                .map(Issue::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            return self.reject_spec(p, &msg, validation, "invalid");
        }
        let persisted = Persisted::new(self.desired.generation + 1, unix_ns(), new.clone());
        if let Err(e) = self.persist(&persisted) {
            error!(error = %e, "cannot persist the chain; update refused");
            return error(
                code::INTERNAL,
                format!(
                    "cannot persist the chain in {}: {e}; nothing changed",
                    self.settings.state_dir.display()
                ),
            );
        }
        self.desired = persisted;
        let generation = self.desired.generation;
        info!(generation, hops = new.hops.len(), "chain update accepted");
        if let Err(e) = self.apply(&new, generation) {
            error!(generation, error = %e, "applying the chain failed");
            self.record_rejected(&new, Some(generation), "ApplyFailed", &e.to_string(), &[]);
        }
        Response::SetChain(v1::SetChainResponse {
            validation: Some(validation),
            accepted: true,
            generation,
            chain: Some(self.chain()),
        })
    }

    fn set_hop_bypass(&mut self, r: v1::SetHopBypassRequest) -> v1::dataplane_response::Response {
        if let Err(v) = limits::check_set_hop_bypass(&r) {
            return error(code::INVALID_ARGUMENT, v.to_string());
        }
        let Some(i) = self.hops.iter().position(|h| h.spec.name == r.hop) else {
            return error(
                code::NOT_FOUND,
                format!(
                    "no hop {:?} in the applied chain (hops: {})",
                    r.hop,
                    self.hops
                        .iter()
                        .map(|h| h.spec.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        };
        let h = &mut self.hops[i];
        let was = h.shared.manual_bypass();
        if was != r.bypass {
            h.shared.set_manual_bypass(r.bypass);
            self.shared.bump();
            h.last_transition_unix_ns = unix_ns();
            h.reason = if r.bypass {
                "ManualBypass"
            } else {
                "ManualBypassCleared"
            }
            .into();
            h.message = if r.reason.is_empty() {
                if r.bypass {
                    "bypass set by an operator"
                } else {
                    "bypass cleared by an operator"
                }
                .into()
            } else {
                r.reason.clone()
            };
            info!(hop = %h.spec.name, bypass = r.bypass, reason = %limits::escape(&h.message), "manual bypass changed");
            self.sync_fallback();
        }
        v1::dataplane_response::Response::SetHopBypass(v1::SetHopBypassResponse {
            hop: Some(self.hop_status(&self.hops[i])),
        })
    }
}

fn ts(unix_ns: u64) -> Option<tapline_proto::Timestamp> {
    (unix_ns > 0).then_some(tapline_proto::Timestamp {
        seconds: (unix_ns / 1_000_000_000) as i64,
        nanos: (unix_ns % 1_000_000_000) as i32,
    })
}

/// A rejected update as kept in `ChainStatus.last_rejected`: bounded
/// whatever was sent (at most [`limits::MAX_HOPS`] hops with their fields
/// cut to their bounds and escaped, a message of at most
/// [`limits::MAX_STORED_MESSAGE_BYTES`], at most [`MAX_STORED_ISSUES`]
/// issues), so every answer that carries it fits in a command frame.
fn bounded_rejection(
    mut spec: v1::ChainSpec,
    generation: Option<u64>,
    reason: &str,
    message: &str,
    mut errors: Vec<v1::ValidationIssue>,
) -> v1::RejectedUpdate {
    let cut = |s: &str, max: usize| limits::truncate(&limits::escape(s), max).into_owned();
    let hops = spec.hops.len();
    spec.hops.truncate(limits::MAX_HOPS);
    for h in &mut spec.hops {
        h.name = cut(&h.name, limits::MAX_HOP_NAME_BYTES);
        h.a = cut(&h.a, limits::MAX_IFNAME_BYTES);
        h.b = cut(&h.b, limits::MAX_IFNAME_BYTES);
    }
    let mut message = cut(message, limits::MAX_STORED_MESSAGE_BYTES);
    if hops > limits::MAX_HOPS {
        message = format!(
            "{message} (the first {} of {hops} hops are kept here)",
            limits::MAX_HOPS
        );
    }
    errors.truncate(MAX_STORED_ISSUES);
    for e in &mut errors {
        e.field = cut(&e.field, limits::QUOTE_BYTES * 2);
        e.message = cut(&e.message, limits::MAX_STORED_MESSAGE_BYTES / 4);
    }
    v1::RejectedUpdate {
        spec: Some(spec),
        generation,
        rejected_at: ts(unix_ns()),
        reason: reason.into(),
        message,
        errors,
    }
}
