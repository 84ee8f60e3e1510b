//! [`BaseUrl`]: a validated provider base URL that request paths are appended to.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// An absolute `http` or `https` URL without a trailing slash, e.g.
/// `https://api.app.message2give.com/2019-01-23`.
///
/// We keep a validated string rather than a `url::Url` because `Url` always serialises
/// a root path as `/` (`https://api.helpscout.net/`), and provider clients build
/// requests by appending `/v2/reports/...`; with the slash removed once here, `join`
/// is a plain concatenation that cannot produce `//`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BaseUrl(String);

/// Why a string is not a usable base URL. The messages never repeat the input: a
/// base URL may contain an interpolated `${VAR}`, and we do not echo environment
/// values into errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseUrlError {
    /// Not an absolute URL at all.
    #[error("not a valid URL ({0}); expected an absolute http or https URL such as \"https://api.example.com\"")]
    Syntax(url::ParseError),
    /// A scheme other than `http` or `https`.
    #[error("only http and https URLs are allowed, e.g. \"https://api.example.com\"")]
    Scheme,
    /// A `user:password@` part; credentials belong in the provider's token keys.
    #[error(
        "must not contain a user name or password; put credentials in the provider's token keys"
    )]
    Credentials,
    /// A `?query` or `#fragment`, which would end up in the middle of every request URL.
    #[error("must not contain a ?query or #fragment, because request paths are appended to it")]
    QueryOrFragment,
}

impl BaseUrl {
    /// Parses and normalises a base URL: http or https only, no credentials, no query
    /// or fragment, trailing slashes removed.
    pub fn parse(s: &str) -> Result<BaseUrl, BaseUrlError> {
        let url = url::Url::parse(s).map_err(BaseUrlError::Syntax)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(BaseUrlError::Scheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(BaseUrlError::Credentials);
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(BaseUrlError::QueryOrFragment);
        }
        Ok(BaseUrl(url.as_str().trim_end_matches('/').to_owned()))
    }

    /// The normalised URL, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Appends a request path: `join("/v2/reports")` or `join("v2/reports")` both give
    /// `https://api.helpscout.net/v2/reports`; an empty path gives the base itself.
    pub fn join(&self, path: &str) -> String {
        if path.is_empty() || path.starts_with('/') {
            format!("{}{path}", self.0)
        } else {
            format!("{}/{path}", self.0)
        }
    }
}

impl fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BaseUrl").field(&self.0).finish()
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BaseUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<BaseUrl, D::Error> {
        let text = String::deserialize(deserializer)?;
        BaseUrl::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_url_loses_its_trailing_slash_so_paths_can_be_appended() {
        let base = BaseUrl::parse("https://api.helpscout.net/").expect("valid");
        assert_eq!(base.as_str(), "https://api.helpscout.net");
        assert_eq!(
            base.join("/v2/reports"),
            "https://api.helpscout.net/v2/reports"
        );
        assert_eq!(
            base.join("v2/reports"),
            "https://api.helpscout.net/v2/reports"
        );
        assert_eq!(base.join(""), "https://api.helpscout.net");
    }

    #[test]
    fn a_base_with_a_path_keeps_the_path_without_the_trailing_slash() {
        let base =
            BaseUrl::parse("http://127.0.0.1:4000/message2give/2019-01-23//").expect("valid");
        assert_eq!(
            base.to_string(),
            "http://127.0.0.1:4000/message2give/2019-01-23"
        );
        assert_eq!(
            base.join("/organisations/self"),
            "http://127.0.0.1:4000/message2give/2019-01-23/organisations/self"
        );
    }

    #[test]
    fn non_http_schemes_credentials_queries_and_relative_urls_are_rejected() {
        assert_eq!(
            BaseUrl::parse("ftp://example.com"),
            Err(BaseUrlError::Scheme)
        );
        assert_eq!(
            BaseUrl::parse("https://user:pw@example.com"),
            Err(BaseUrlError::Credentials)
        );
        assert_eq!(
            BaseUrl::parse("https://example.com/api?x=1"),
            Err(BaseUrlError::QueryOrFragment)
        );
        assert!(matches!(
            BaseUrl::parse("example.com/api"),
            Err(BaseUrlError::Syntax(_))
        ));
    }
}
