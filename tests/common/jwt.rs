//! A local stand-in for an identity provider: signing keys on disk and tokens.

use std::path::{Path, PathBuf};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ED25519, PKCS_RSA_SHA256, RsaKeySize};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://idp.example.test";
pub const HS_SECRET: &str = "hs256-shared-secret-for-tests-0123456789";

pub struct Idp {
    pub rsa: KeyPair,
    pub ec: KeyPair,
    pub ed: KeyPair,
    pub rsa_pub: PathBuf,
    pub ec_pub: PathBuf,
    pub ed_pub: PathBuf,
    pub hs_secret: PathBuf,
}

impl Idp {
    pub fn new(dir: &Path) -> Idp {
        let rsa = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap();
        let ec = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let ed = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        Idp {
            rsa_pub: write("jwt_rsa.pem", &rsa.public_key_pem()),
            ec_pub: write("jwt_ec.pem", &ec.public_key_pem()),
            ed_pub: write("jwt_ed.pem", &ed.public_key_pem()),
            hs_secret: write("jwt_hs.secret", HS_SECRET),
            rsa,
            ec,
            ed,
        }
    }

    /// `[auth.jwt]` config text for these keys.
    pub fn config_toml(&self, resource: &str, extra: &str) -> String {
        format!(
            r#"
[auth]
mode = "api-keys+jwt"
resource = "{resource}"
required_scopes = ["mcp"]

[auth.jwt]
issuer = "{ISSUER}"
leeway = "5s"
tier_claim = "tier"
{extra}

[[auth.jwt.keys]]
kid = "rsa1"
file = "{}"
algorithms = ["RS256"]

[[auth.jwt.keys]]
kid = "ec1"
file = "{}"
algorithms = ["ES256"]

[[auth.jwt.keys]]
kid = "ed1"
file = "{}"
algorithms = ["EdDSA"]

[[auth.jwt.keys]]
kid = "hs1"
file = "{}"
algorithms = ["HS256"]

[access.tool_scopes]
search_docs = ["docs:read"]
read_doc = ["docs:read"]

[rate_limit.tiers.gold]
rate = "6000/min"
burst = 500
"#,
            self.rsa_pub.display(),
            self.ec_pub.display(),
            self.ed_pub.display(),
            self.hs_secret.display()
        )
    }

    pub fn sign(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        let key = match alg {
            Algorithm::RS256 => {
                EncodingKey::from_rsa_pem(self.rsa.serialize_pem().as_bytes()).unwrap()
            }
            Algorithm::ES256 => {
                EncodingKey::from_ec_pem(self.ec.serialize_pem().as_bytes()).unwrap()
            }
            Algorithm::EdDSA => {
                EncodingKey::from_ed_pem(self.ed.serialize_pem().as_bytes()).unwrap()
            }
            Algorithm::HS256 => EncodingKey::from_secret(HS_SECRET.as_bytes()),
            other => panic!("no test key for {other:?}"),
        };
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }
}

/// An edge that takes only HS256 JWTs signed with the secret in `secret_file`
/// (the key file the tests rewrite), for `resource`.
pub async fn hs256_edge(secret_file: &Path, resource: &str) -> super::Edge {
    let toml = format!(
        "[auth]\nmode = \"jwt\"\nresource = \"{resource}\"\n[auth.jwt]\nissuer = \"{ISSUER}\"\nkey_file = \"{}\"\nalgorithms = [\"HS256\"]\n",
        secret_file.display()
    );
    super::Edge::start_with_file(
        |_| toml,
        |env| {
            env.remove("MCP_API_KEYS_FILE");
        },
    )
    .await
}

/// An HS256 token for `sub` on `resource`, signed with `secret`.
pub fn hs256_token(secret: &str, resource: &str, sub: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(resource, sub, "mcp"),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

pub fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// Claims a well-behaved IdP would issue for `resource`.
pub fn claims(resource: &str, sub: &str, scope: &str) -> Value {
    json!({
        "iss": ISSUER,
        "sub": sub,
        "aud": resource,
        "iat": now(),
        "exp": now() + 300,
        "scope": scope,
    })
}

/// base64url without padding, for hand-made tokens.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A P-256 public key as a JWK (x and y from the uncompressed SEC1 point).
pub fn ec_jwk(kp: &KeyPair, kid: &str) -> Value {
    let raw = kp.public_key_raw();
    json!({"kty":"EC","crv":"P-256","kid":kid,"alg":"ES256","use":"sig",
           "x": b64(&raw[1..33]), "y": b64(&raw[33..65])})
}

/// A local stand-in for an IdP's JWKS endpoint: serves `document`, and answers 500
/// while it is `None`. Stops when dropped.
pub struct JwksServer {
    pub url: String,
    pub document: std::sync::Arc<std::sync::Mutex<Option<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(document: Value) -> JwksServer {
        let served = std::sync::Arc::new(std::sync::Mutex::new(Some(document)));
        let app = {
            let served = served.clone();
            axum::Router::new().route(
                "/jwks.json",
                axum::routing::get(move || {
                    let doc = served.lock().unwrap().clone();
                    async move {
                        match doc {
                            Some(doc) => Ok(axum::Json(doc)),
                            None => Err(http::StatusCode::INTERNAL_SERVER_ERROR),
                        }
                    }
                }),
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://127.0.0.1:{}/jwks.json",
            listener.local_addr().unwrap().port()
        );
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        JwksServer {
            url,
            document: served,
            task,
        }
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
