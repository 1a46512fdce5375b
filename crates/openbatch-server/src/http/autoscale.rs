//! `enableautoscale`, `disableautoscale`, `evaluateautoscale`, and the checks a formula and
//! its interval pass before a pool is created or changed.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use openbatch_api::error::{codes, ApiError};
use openbatch_api::models::{PoolEnableAutoScale, PoolEvaluateAutoScale};
use openbatch_api::time::IsoDuration;
use openbatch_core::{Input, Target};

use super::{empty, json_response, parse_body, ApiResult, Ctx, S};

/// Azure's longest evaluation interval.
const MAX_INTERVAL: std::time::Duration = std::time::Duration::from_secs(168 * 3600);

/// Reject a formula that does not parse, with its line and column, as `enableautoscale` does.
pub(crate) fn check_formula(formula: &str) -> Result<(), ApiError> {
    openbatch_autoscale::parse(formula)
        .map(|_| ())
        .map_err(|e| {
            let code = serde_json::to_value(e.code())
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let mut err = ApiError::new(
                400,
                codes::INVALID_AUTOSCALE_FORMULA,
                format!("The autoscale formula is not valid: {e}"),
            )
            .with_value("PropertyName", "autoScaleFormula")
            .with_value("Code", code);
            if let Some(pos) = e.position() {
                err = err.with_value("Position", pos.to_string());
            }
            err
        })
}

/// The interval must lie between the configured minimum (Azure: 5 minutes) and 168 hours.
pub(crate) fn check_interval(
    interval: Option<IsoDuration>,
    min: std::time::Duration,
) -> Result<(), ApiError> {
    let Some(d) = interval else { return Ok(()) };
    let value = d.to_string();
    match d.as_duration() {
        Some(d) if d >= min && d <= MAX_INTERVAL => Ok(()),
        _ => Err(ApiError::invalid_property(
            "autoScaleEvaluationInterval",
            &value,
            &format!(
                "must be between {} and 168 hours (this server's minimum is set by autoscale_min_interval)",
                IsoDuration(Some(min))
            ),
        )),
    }
}

pub(crate) async fn enable(
    State(st): S,
    ctx: Ctx,
    Path(pool): Path<String>,
    body: Bytes,
) -> ApiResult {
    let req: PoolEnableAutoScale = parse_body(&body)?;
    if let Some(f) = &req.auto_scale_formula {
        check_formula(f)?;
    }
    check_interval(
        req.auto_scale_evaluation_interval,
        st.autoscaler.min_interval(),
    )?;
    let input = ctx.guarded(
        Target::Pool(pool.clone()),
        Input::EnableAutoScale {
            id: pool,
            formula: req.auto_scale_formula,
            interval: req.auto_scale_evaluation_interval,
        },
    )?;
    st.engine.submit(input).await?;
    Ok(empty(StatusCode::OK))
}

pub(crate) async fn disable(State(st): S, Path(pool): Path<String>) -> ApiResult {
    st.engine
        .submit(Input::DisableAutoScale { id: pool })
        .await?;
    Ok(empty(StatusCode::OK))
}

/// Evaluate a formula now against the pool's state and history; nothing is applied.
pub(crate) async fn evaluate(State(st): S, Path(pool): Path<String>, body: Bytes) -> ApiResult {
    let req: PoolEvaluateAutoScale = parse_body(&body)?;
    let p = st.engine.read().pool(
        &pool,
        &openbatch_core::Urls {
            base: String::new(),
        },
    )?;
    if !p.enable_auto_scale {
        return Err(ApiError::new(
            409,
            codes::AUTOSCALE_NOT_ENABLED,
            format!(
                "Autoscale is not enabled on pool '{pool}'; enable it before evaluating a formula."
            ),
        )
        .into());
    }
    check_formula(&req.auto_scale_formula)?;
    let (run, _) = st
        .autoscaler
        .evaluate(&pool, &req.auto_scale_formula, Utc::now())
        .ok_or_else(|| openbatch_core::CoreError::PoolNotFound(pool.clone()))?;
    Ok(json_response(StatusCode::OK, &run))
}

/// `GET /openbatch/pools/{pool}/autoscalehistory`: the pool's last evaluations (newest first)
/// with what each saw: an openbatch extension behind `openbatch autoscale history`.
pub(crate) async fn history(State(st): S, Path(pool): Path<String>) -> ApiResult {
    st.engine.read().pool(
        &pool,
        &openbatch_core::Urls {
            base: String::new(),
        },
    )?;
    let entries = st.autoscaler.history(&pool);
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "value": entries }),
    ))
}
