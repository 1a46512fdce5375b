//! openbatch's join tokens for `openbatch node join` (account owner only), and the pool
//! autoscale operations.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::request::Seg::{Lit, Val};
use crate::{Client, ClientError, NO_BODY};

/// A minted join token. `token` is the secret, shown only when it is created.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinToken {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub created: chrono::DateTime<chrono::Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Serialize)]
struct CreateBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}

#[derive(Deserialize)]
struct TokenList {
    #[serde(default)]
    value: Vec<JoinToken>,
}

impl Client {
    /// `POST /openbatch/jointokens` (201): a new token; its secret is in `token`.
    pub async fn create_join_token(
        &self,
        description: Option<&str>,
    ) -> Result<JoinToken, ClientError> {
        let url = self.url(&[Lit("openbatch"), Lit("jointokens")], &[])?;
        self.call_json(Method::POST, url, Some(&CreateBody { description }))
            .await
    }

    /// `GET /openbatch/jointokens`: every token, without secrets.
    pub async fn list_join_tokens(&self) -> Result<Vec<JoinToken>, ClientError> {
        let url = self.url(&[Lit("openbatch"), Lit("jointokens")], &[])?;
        let list: TokenList = self.call_json(Method::GET, url, NO_BODY).await?;
        Ok(list.value)
    }

    /// `DELETE /openbatch/jointokens/{id}`: agents presenting it are refused from now on.
    pub async fn revoke_join_token(&self, id: &str) -> Result<(), ClientError> {
        let url = self.url(
            &[Lit("openbatch"), Lit("jointokens"), Val("token id", id)],
            &[],
        )?;
        self.call_no_content(Method::DELETE, url, NO_BODY).await
    }
}

impl Client {
    /// `POST /pools/{id}/enableautoscale` (200).
    pub async fn enable_auto_scale(
        &self,
        pool_id: &str,
        body: &openbatch_api::models::PoolEnableAutoScale,
    ) -> Result<(), ClientError> {
        let url = self.url(
            &[
                Lit("pools"),
                Val("pool id", pool_id),
                Lit("enableautoscale"),
            ],
            &[],
        )?;
        self.call_no_content(Method::POST, url, Some(body)).await
    }

    /// `POST /pools/{id}/disableautoscale` (200).
    pub async fn disable_auto_scale(&self, pool_id: &str) -> Result<(), ClientError> {
        let url = self.url(
            &[
                Lit("pools"),
                Val("pool id", pool_id),
                Lit("disableautoscale"),
            ],
            &[],
        )?;
        self.call_no_content(Method::POST, url, NO_BODY).await
    }

    /// `POST /pools/{id}/evaluateautoscale`: the outcome of a formula now, not applied.
    pub async fn evaluate_auto_scale(
        &self,
        pool_id: &str,
        formula: &str,
    ) -> Result<openbatch_api::models::AutoScaleRun, ClientError> {
        let url = self.url(
            &[
                Lit("pools"),
                Val("pool id", pool_id),
                Lit("evaluateautoscale"),
            ],
            &[],
        )?;
        let body = openbatch_api::models::PoolEvaluateAutoScale {
            auto_scale_formula: formula.to_string(),
        };
        self.call_json(Method::POST, url, Some(&body)).await
    }

    /// `POST /openbatch/pools/{pool}/nodes/{node}/preempt` (202): preempt a low-priority node
    /// after a notice and `grace` for its tasks (the server's configured grace if `None`).
    pub async fn preempt_node(
        &self,
        pool_id: &str,
        node_id: &str,
        grace: Option<std::time::Duration>,
    ) -> Result<(), ClientError> {
        let url = self.url(
            &[
                Lit("openbatch"),
                Lit("pools"),
                Val("pool id", pool_id),
                Lit("nodes"),
                Val("node id", node_id),
                Lit("preempt"),
            ],
            &[],
        )?;
        let body = serde_json::json!({
            "gracePeriod": grace.map(|g| openbatch_api::time::format_duration(openbatch_api::time::IsoDuration::from_duration(g))),
        });
        self.call_no_content(Method::POST, url, Some(&body)).await
    }

    /// `GET /openbatch/pools/{id}/autoscalehistory`: the pool's last evaluations, newest first.
    pub async fn autoscale_history(
        &self,
        pool_id: &str,
    ) -> Result<Vec<serde_json::Value>, ClientError> {
        let url = self.url(
            &[
                Lit("openbatch"),
                Lit("pools"),
                Val("pool id", pool_id),
                Lit("autoscalehistory"),
            ],
            &[],
        )?;
        let list: HistoryList = self.call_json(Method::GET, url, NO_BODY).await?;
        Ok(list.value)
    }
}

#[derive(Deserialize)]
struct HistoryList {
    #[serde(default)]
    value: Vec<serde_json::Value>,
}
