//! `deploy.placement.constraints` and `preferences: spread`: which node attribute they name and
//! how it is compared. Parsed when a service's spec is derived, so a constraint that does not
//! read is refused before anything is stored.

use serde::{Deserialize, Serialize};

use super::NodeInfo;

/// A node attribute a constraint or a spread preference names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Attribute {
    /// `node.hostname`
    Hostname,
    /// `node.id`: the node's name in the cluster.
    Id,
    /// `node.role`: `server` or `agent` (Swarm's `manager` and `worker` are read as those).
    Role,
    /// `node.labels.<key>`
    Label(String),
}

impl Attribute {
    pub fn parse(text: &str) -> Option<Attribute> {
        match text.trim() {
            "node.hostname" => Some(Attribute::Hostname),
            "node.id" => Some(Attribute::Id),
            "node.role" => Some(Attribute::Role),
            other => {
                let key = other.strip_prefix("node.labels.")?;
                (!key.is_empty()).then(|| Attribute::Label(key.to_string()))
            }
        }
    }

    /// The node's value of the attribute; `None` for a label the node does not have.
    pub fn value<'a>(&self, node: &'a NodeInfo) -> Option<&'a str> {
        match self {
            Attribute::Hostname => Some(&node.hostname),
            Attribute::Id => Some(&node.name.0),
            Attribute::Role => Some(node.role.as_str()),
            Attribute::Label(key) => node.labels.get(key).map(String::as_str),
        }
    }
}

impl std::fmt::Display for Attribute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attribute::Hostname => f.write_str("node.hostname"),
            Attribute::Id => f.write_str("node.id"),
            Attribute::Role => f.write_str("node.role"),
            Attribute::Label(key) => write!(f, "node.labels.{key}"),
        }
    }
}

/// One `deploy.placement.constraints` entry: `<attribute> == <value>` or `!=`.
/// Kept in the spec as the text it was written as.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Constraint {
    pub attribute: Attribute,
    pub equal: bool,
    pub value: String,
}

impl Constraint {
    /// Reads `node.labels.zone == east` (spaces around the operator are optional).
    pub fn parse(text: &str) -> Result<Constraint, String> {
        let (left, equal, right) = if let Some((l, r)) = text.split_once("!=") {
            (l, false, r)
        } else if let Some((l, r)) = text.split_once("==") {
            (l, true, r)
        } else {
            return Err(format!(
                "`{text}` has no `==` or `!=` (expected e.g. `node.labels.zone==east`)"
            ));
        };
        let attribute = Attribute::parse(left).ok_or_else(|| {
            format!(
                "`{}` is not a node attribute (expected node.hostname, node.id, node.role or node.labels.<key>)",
                left.trim()
            )
        })?;
        let mut value = right.trim().to_string();
        if value.is_empty() {
            return Err(format!("`{text}` compares with nothing"));
        }
        if attribute == Attribute::Role {
            value = match value.as_str() {
                "manager" => "server".to_string(),
                "worker" => "agent".to_string(),
                "server" | "agent" => value,
                other => {
                    return Err(format!(
                        "`node.role` is `server` or `agent` (or Swarm's `manager`, `worker`), not `{other}`"
                    ));
                }
            };
        }
        Ok(Constraint {
            attribute,
            equal,
            value,
        })
    }

    /// Whether `node` meets the constraint. A missing label equals nothing (so `!=` holds).
    pub fn holds(&self, node: &NodeInfo) -> bool {
        let value = self.attribute.value(node);
        (value == Some(self.value.as_str())) == self.equal
    }

    /// Why `node` does not meet it, in words: "node.labels.zone==east (it has west)".
    pub fn unmet(&self, node: &NodeInfo) -> String {
        match self.attribute.value(node) {
            Some(value) => format!("`{self}` not met (it has {value})"),
            None => format!("`{self}` not met (it has no such label)"),
        }
    }
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = if self.equal { "==" } else { "!=" };
        write!(f, "{}{op}{}", self.attribute, self.value)
    }
}

impl TryFrom<String> for Constraint {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Constraint::parse(&text)
    }
}

impl From<Constraint> for String {
    fn from(constraint: Constraint) -> String {
        constraint.to_string()
    }
}

/// A `preferences: - spread: <attribute>` entry, kept as the text it names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Spread(pub Attribute);

impl TryFrom<String> for Spread {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Attribute::parse(&text).map(Spread).ok_or_else(|| {
            format!(
                "`spread: {text}` does not name a node attribute (expected node.labels.<key>, node.hostname, node.id or node.role)"
            )
        })
    }
}

impl From<Spread> for String {
    fn from(spread: Spread) -> String {
        spread.0.to_string()
    }
}
