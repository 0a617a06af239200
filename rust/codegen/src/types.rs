//! The messages, enums and services of a descriptor set, with their proto comments, as the
//! document needs them.

use std::collections::HashMap;

use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorProto};

use crate::Result;

/// A message or enum of the descriptor set, with what the document needs of it.
pub(crate) struct Type_<'a> {
    /// The message, if it is one.
    pub(crate) message: Option<&'a DescriptorProto>,
    /// The enum, if it is one.
    pub(crate) enumeration: Option<&'a EnumDescriptorProto>,
    /// Its leading comment.
    pub(crate) comment: Option<String>,
    /// The leading comments of its fields (messages) or values (enums), by index.
    pub(crate) member_comments: Vec<Option<String>>,
}

/// Every message and enum of a descriptor set, by fully-qualified name (`.pkg.Message`).
pub(crate) struct Types<'a> {
    pub(crate) types: HashMap<String, Type_<'a>>,
    pub(crate) services: Vec<Service<'a>>,
}

/// A service of a file to generate, with its comments.
pub(crate) struct Service<'a> {
    pub(crate) package: &'a str,
    pub(crate) name: &'a str,
    pub(crate) comment: Option<String>,
    pub(crate) methods: Vec<(&'a prost_types::MethodDescriptorProto, Option<String>)>,
}

impl<'a> Types<'a> {
    pub(crate) fn new(files: &'a [FileDescriptorProto], to_generate: &[String]) -> Self {
        let mut types = HashMap::new();
        let mut services = Vec::new();
        for file in files {
            let comments = Comments::of(file);
            let package = format!(".{}", file.package());
            for (i, message) in file.message_type.iter().enumerate() {
                add_message(&mut types, &comments, &package, message, vec![4, index(i)]);
            }
            for (i, enumeration) in file.enum_type.iter().enumerate() {
                add_enum(
                    &mut types,
                    &comments,
                    &package,
                    enumeration,
                    vec![5, index(i)],
                );
            }
            if !to_generate.iter().any(|name| name == file.name()) {
                continue;
            }
            for (s, service) in file.service.iter().enumerate() {
                services.push(Service {
                    package: file.package(),
                    name: service.name(),
                    comment: comments.get(&[6, index(s)]),
                    methods: service
                        .method
                        .iter()
                        .enumerate()
                        .map(|(m, method)| (method, comments.get(&[6, index(s), 2, index(m)])))
                        .collect(),
                });
            }
        }
        Self { types, services }
    }

    pub(crate) fn get(&self, name: &str) -> Result<&Type_<'a>> {
        self.types
            .get(name)
            .ok_or_else(|| format!("type {name} is not in the descriptor set").into())
    }

    pub(crate) fn message(&self, name: &str) -> Result<(&'a DescriptorProto, &Type_<'a>)> {
        let found = self.get(name)?;
        let message = found
            .message
            .ok_or_else(|| format!("{name} is not a message"))?;
        Ok((message, found))
    }
}

pub(crate) fn index(i: usize) -> i32 {
    i32::try_from(i).unwrap_or(i32::MAX)
}

pub(crate) fn add_message<'a>(
    types: &mut HashMap<String, Type_<'a>>,
    comments: &Comments,
    scope: &str,
    message: &'a DescriptorProto,
    path: Vec<i32>,
) {
    let name = format!("{scope}.{}", message.name());
    let member_comments = (0..message.field.len())
        .map(|f| comments.get(&[path.as_slice(), &[2, index(f)]].concat()))
        .collect();
    for (i, nested) in message.nested_type.iter().enumerate() {
        add_message(
            types,
            comments,
            &name,
            nested,
            [path.as_slice(), &[3, index(i)]].concat(),
        );
    }
    for (i, enumeration) in message.enum_type.iter().enumerate() {
        add_enum(
            types,
            comments,
            &name,
            enumeration,
            [path.as_slice(), &[4, index(i)]].concat(),
        );
    }
    types.insert(
        name,
        Type_ {
            message: Some(message),
            enumeration: None,
            comment: comments.get(&path),
            member_comments,
        },
    );
}

pub(crate) fn add_enum<'a>(
    types: &mut HashMap<String, Type_<'a>>,
    comments: &Comments,
    scope: &str,
    enumeration: &'a EnumDescriptorProto,
    path: Vec<i32>,
) {
    let member_comments = (0..enumeration.value.len())
        .map(|v| comments.get(&[path.as_slice(), &[2, index(v)]].concat()))
        .collect();
    types.insert(
        format!("{scope}.{}", enumeration.name()),
        Type_ {
            message: None,
            enumeration: Some(enumeration),
            comment: comments.get(&path),
            member_comments,
        },
    );
}

/// The leading comments of a file's elements, by their source-info path.
pub(crate) struct Comments(HashMap<Vec<i32>, String>);

impl Comments {
    pub(crate) fn of(file: &FileDescriptorProto) -> Self {
        let mut comments = HashMap::new();
        for location in file.source_code_info.iter().flat_map(|info| &info.location) {
            if let Some(text) = &location.leading_comments {
                let text = text
                    .lines()
                    .map(|line| line.strip_prefix(' ').unwrap_or(line).trim_end())
                    .collect::<Vec<_>>()
                    .join("\n");
                let text = text.trim();
                if !text.is_empty() {
                    comments.insert(location.path.clone(), text.to_owned());
                }
            }
        }
        Self(comments)
    }

    pub(crate) fn get(&self, path: &[i32]) -> Option<String> {
        self.0.get(path).cloned()
    }
}
