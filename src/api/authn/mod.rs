//! Who a request is and what it may do, as Kuma's API server decides it:
//!
//! 1. with `apiServer.authn.localhostIsAdmin`, a request from a loopback address is the
//!    admin (any token it carries is not looked at, as in Kuma);
//! 2. else `Authorization: Bearer <user token>` ([`tokens`]) names the user, who is also in
//!    `mesh-system:authenticated`; an invalid token is a 401, whatever the request;
//! 3. else the request is anonymous (`mesh-system:unauthenticated`).
//!
//! Then `access.static` decides ([`Authz`]): secrets (Secret, GlobalSecret: signing keys,
//! the admin token) only for `adminResources`, every other write for `writeResources`,
//! token generation for `generateUserToken`. A refused anonymous request is a 401 (a token
//! would help), a refused user a 403. Kuma answers the anonymous case with 403 as well;
//! 401 is what HTTP means by "send credentials", and kumactl treats both as an error.

pub mod jwt;
pub mod tokens;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{ApiContext, ApiError, Request};
use crate::config::{AccessRule, Config, GROUP_ADMIN, GROUP_AUTHENTICATED, GROUP_UNAUTHENTICATED, USER_ADMIN};
use crate::model::secret::{GlobalSecretSpec, SecretSpec};
use crate::model::{ResourceKey, ResourceType, Spec};
use crate::store::{SharedStore, StoreError};
pub use tokens::{TokenError, UserTokens};

/// Kuma's anonymous user.
pub const USER_ANONYMOUS: &str = "mesh-system:anonymous";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    /// The admin localhost acts as (Kuma's `user.Admin.Authenticated()`).
    pub fn admin() -> User {
        User { name: USER_ADMIN.into(), groups: vec![GROUP_ADMIN.into(), GROUP_AUTHENTICATED.into()] }
    }

    pub fn anonymous() -> User {
        User { name: USER_ANONYMOUS.into(), groups: vec![GROUP_UNAUTHENTICATED.into()] }
    }

    pub fn is_anonymous(&self) -> bool {
        self.groups.iter().any(|g| g == GROUP_UNAUTHENTICATED)
    }

    fn authenticated(mut self) -> User {
        if !self.groups.iter().any(|g| g == GROUP_AUTHENTICATED) {
            self.groups.push(GROUP_AUTHENTICATED.into());
        }
        self
    }
}

impl std::fmt::Display for User {
    // Kuma's `user.String()`, as its access-denied messages print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.name, self.groups.join(","))
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// The unauthenticated answer, Kuma's title.
fn unauthenticated(detail: impl Into<String>) -> ApiError {
    ApiError::new(401, "Unauthenticated", detail)
}

/// Who sent `req`.
pub fn authenticate(ctx: &ApiContext, req: &Request) -> Result<User, ApiError> {
    let localhost_is_admin = ctx.config.read().unwrap_or_else(|p| p.into_inner()).api_server.authn.localhost_is_admin;
    if localhost_is_admin && req.peer.is_some_and(|p| is_loopback(p.ip())) {
        return Ok(User::admin());
    }
    let Some(header) = req.header("Authorization") else { return Ok(User::anonymous()) };
    let Some(token) = header.get(..7).filter(|s| s.eq_ignore_ascii_case("bearer ")).and_then(|_| header.get(7..))
    else {
        // Kuma only looks at bearer tokens; another scheme is no credential at all.
        return Ok(User::anonymous());
    };
    match ctx.tokens.validate(token.trim()) {
        Ok(user) => Ok(user.authenticated()),
        Err(e) if e.is_client_error() => {
            log::info!("api: authentication rejected for {}: {e}", req.peer.map(|p| p.to_string()).unwrap_or_default());
            Err(unauthenticated("Invalid authentication data"))
        }
        Err(e) => Err(ApiError::new(503, "Service Unavailable", format!("cannot check the token: {e}"))),
    }
}

/// Access decisions over `access.static`.
pub struct Authz<'a> {
    pub config: &'a Config,
    pub user: &'a User,
}

impl Authz<'_> {
    fn check(&self, rule: &AccessRule, denied: impl FnOnce() -> String) -> Result<(), ApiError> {
        if rule.allows(&self.user.name, &self.user.groups) {
            return Ok(());
        }
        if self.user.is_anonymous() {
            return Err(unauthenticated(format!("{}; send a user token (Authorization: Bearer <token>)", denied())));
        }
        Err(ApiError::new(403, "Access Denied", denied()))
    }

    /// Any method on a resource of `rtype`.
    pub fn resource(&self, method: &str, rtype: ResourceType) -> Result<(), ApiError> {
        let s = &self.config.access.r#static;
        if rtype.is_secret() {
            return self.check(&s.admin_resources, || {
                format!("access denied: user \"{}\" cannot access the resource of type \"{}\"", self.user, rtype.name())
            });
        }
        if !matches!(method, "GET" | "HEAD") {
            return self.check(&s.write_resources, || {
                format!("access denied: user \"{}\" cannot modify resources of type \"{}\"", self.user, rtype.name())
            });
        }
        Ok(())
    }

    /// The config dump of a dataplane (`/meshes/{mesh}/dataplanes/{name}/xds`).
    pub fn view_config_dump(&self) -> Result<(), ApiError> {
        self.check(&self.config.access.r#static.view_config_dump, || {
            format!("access denied: user \"{}\" cannot view config dumps", self.user)
        })
    }

    /// `POST /tokens/dataplane` (`access.static.generateDpToken`, admins by default).
    pub fn generate_dataplane_token(&self) -> Result<(), ApiError> {
        self.check(&self.config.access.r#static.generate_dp_token, || {
            format!("access denied: user \"{}\" cannot generate dataplane tokens", self.user)
        })
    }

    pub fn generate_user_token(&self) -> Result<(), ApiError> {
        self.check(&self.config.access.r#static.generate_user_token, || {
            format!("access denied: user \"{}\" cannot generate user tokens", self.user)
        })
    }
}

/// What [`bootstrap`] did, for the start-up log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Bootstrapped {
    pub admin_token_created: bool,
}

/// At start: the user token signing key, and with `bootstrapAdminToken` the admin token
/// in the GlobalSecret `admin-user-token`. Both are create-if-absent, so several control
/// planes on one store agree on one of each.
pub fn bootstrap(store: &SharedStore, config: &Config) -> Result<Bootstrapped, TokenError> {
    let tokens = UserTokens::new(store.clone(), Duration::ZERO);
    tokens.latest_signing_key()?;
    let mut out = Bootstrapped::default();
    if !config.api_server.authn.tokens.bootstrap_admin_token {
        return Ok(out);
    }
    let key = ResourceKey::new(ResourceType::GlobalSecret, "", tokens::ADMIN_TOKEN_SECRET);
    match store.get(&key) {
        Ok(_) => return Ok(out),
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let admin = User { name: USER_ADMIN.into(), groups: vec![GROUP_ADMIN.into()] };
    let token = tokens.issue(&admin, tokens::ADMIN_TOKEN_VALIDITY)?;
    let spec = Spec::GlobalSecret(GlobalSecretSpec(SecretSpec::new(token.into_bytes())));
    match store.create("", tokens::ADMIN_TOKEN_SECRET, spec) {
        Ok(_) => out.admin_token_created = true,
        Err(StoreError::AlreadyExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(out)
}

/// The validator every request shares.
pub fn user_tokens(store: &SharedStore, config: &Config) -> Arc<UserTokens> {
    Arc::new(UserTokens::new(store.clone(), config.store.cache.expiration_time.as_std()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_includes_mapped_v4() {
        assert!(is_loopback("127.0.0.5".parse().unwrap()));
        assert!(is_loopback("::1".parse().unwrap()));
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback("10.0.0.1".parse().unwrap()));
        assert!(!is_loopback("::ffff:10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn access_rules_by_user_and_group() {
        let config = Config::default();
        let john = User { name: "john".into(), groups: vec!["dev".into(), GROUP_AUTHENTICATED.into()] };
        let anon = User::anonymous();
        let admin = User::admin();
        let z = |u| Authz { config: &config, user: u };
        assert!(z(&admin).resource("GET", ResourceType::Secret).is_ok());
        assert_eq!(z(&john).resource("GET", ResourceType::Secret).unwrap_err().status, 403);
        assert_eq!(z(&anon).resource("GET", ResourceType::GlobalSecret).unwrap_err().status, 401);
        assert!(z(&john).resource("PUT", ResourceType::TrafficRoute).is_ok());
        assert!(z(&anon).resource("GET", ResourceType::Mesh).is_ok());
        assert_eq!(z(&anon).resource("DELETE", ResourceType::Mesh).unwrap_err().status, 401);
        assert_eq!(z(&john).generate_user_token().unwrap_err().status, 403);
        let err = z(&john).resource("PUT", ResourceType::Secret).unwrap_err();
        assert_eq!(
            err.detail,
            "access denied: user \"john/dev,mesh-system:authenticated\" cannot access the resource of type \"Secret\""
        );
    }
}
