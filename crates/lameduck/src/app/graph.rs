//! The dependency graph: start order, and the cycle when there is one.

use std::collections::HashMap;

use super::{BuildError, BuildErrorKind};
use crate::Component;

/// Returns component indices in start order (dependencies first; ties in
/// declaration order).
///
/// # Errors
///
/// Duplicate names, unknown dependencies, and cycles, each named.
pub(crate) fn order(components: &[Component]) -> Result<Vec<usize>, BuildError> {
    let mut index = HashMap::new();
    for (i, c) in components.iter().enumerate() {
        if index.insert(&*c.name, i).is_some() {
            return Err(BuildError::new(
                BuildErrorKind::DuplicateName,
                format!("two components are named {:?}", &*c.name),
            ));
        }
    }
    let mut deps = Vec::with_capacity(components.len());
    for c in components {
        let mut d = Vec::new();
        for dep in &c.deps {
            match index.get(&**dep) {
                Some(&j) => d.push(j),
                None => {
                    return Err(BuildError::new(
                        BuildErrorKind::UnknownDependency,
                        format!(
                            "component {:?} depends on {:?}, which is not a component",
                            &*c.name, &**dep
                        ),
                    ));
                }
            }
        }
        deps.push(d);
    }
    // Depth-first, in declaration order, so that the result is stable and a
    // cycle is found as the path on the stack.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    let mut marks = vec![Mark::New; components.len()];
    let mut out = Vec::with_capacity(components.len());
    let mut stack: Vec<usize> = Vec::new();
    fn visit(
        i: usize,
        deps: &[Vec<usize>],
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
        out: &mut Vec<usize>,
        components: &[Component],
    ) -> Result<(), BuildError> {
        match marks[i] {
            Mark::Done => return Ok(()),
            Mark::OnStack => {
                let from = stack.iter().position(|&s| s == i).unwrap_or(0);
                let mut names: Vec<&str> = stack[from..]
                    .iter()
                    .map(|&s| &*components[s].name)
                    .collect();
                names.push(&components[i].name);
                return Err(BuildError::new(
                    BuildErrorKind::DependencyCycle,
                    format!("dependency cycle: {}", names.join(" -> ")),
                ));
            }
            Mark::New => {}
        }
        marks[i] = Mark::OnStack;
        stack.push(i);
        for &d in &deps[i] {
            visit(d, deps, marks, stack, out, components)?;
        }
        stack.pop();
        marks[i] = Mark::Done;
        out.push(i);
        Ok(())
    }
    for i in 0..components.len() {
        visit(i, &deps, &mut marks, &mut stack, &mut out, components)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &'static str, deps: &[&'static str]) -> Component {
        deps.iter()
            .fold(Component::new(name, |_ctx| async { Ok(()) }), |c, d| {
                c.depends_on(*d)
            })
    }

    fn names(cs: &[Component], order: &[usize]) -> Vec<String> {
        order.iter().map(|&i| cs[i].name.to_string()).collect()
    }

    #[test]
    fn dependencies_come_first() {
        let cs = vec![
            c("http", &["db", "cache"]),
            c("db", &[]),
            c("cache", &["db"]),
        ];
        let order = order(&cs).unwrap();
        assert_eq!(names(&cs, &order), ["db", "cache", "http"]);
    }

    #[test]
    fn a_cycle_is_named() {
        let cs = vec![c("a", &["b"]), c("b", &["c"]), c("c", &["a"]), c("d", &[])];
        let err = order(&cs).unwrap_err();
        assert_eq!(err.kind(), BuildErrorKind::DependencyCycle);
        assert_eq!(err.to_string(), "dependency cycle: a -> b -> c -> a");
    }

    #[test]
    fn a_self_dependency_is_a_cycle() {
        let err = order(&[c("a", &["a"])]).unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: a -> a");
    }

    #[test]
    fn unknown_and_duplicate_names_are_rejected() {
        let err = order(&[c("http", &["db"])]).unwrap_err();
        assert_eq!(err.kind(), BuildErrorKind::UnknownDependency);
        assert!(err.to_string().contains("\"db\""));
        let err = order(&[c("a", &[]), c("a", &[])]).unwrap_err();
        assert_eq!(err.kind(), BuildErrorKind::DuplicateName);
    }
}
