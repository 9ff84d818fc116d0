//! Checks a statement's size before DataFusion plans it.
//!
//! The parser keeps nesting shallow (its recursion limit), but chains such
//! as `1+1+…+1` or `x::int::int…` are parsed in a loop into left-deep trees
//! of any depth, and planning, optimising or dropping such a tree recurses
//! once per level: a 10 KB query overflowed the stack and aborted the whole
//! process. So the text is bounded, and the tree's depth is measured with a
//! visitor that stops descending at the limit, which bounds its own stack.

use std::ops::ControlFlow;

use deltalake::datafusion::sql::parser::{CopyToSource, DFParserBuilder, Statement};
use deltalake::datafusion::sql::sqlparser::ast::{Expr, Query, Visit, Visitor};

use crate::error::{Error, Result};

/// Refuses a statement longer than `max_bytes` or nesting expressions
/// deeper than `max_depth`, with one sentence naming the limit. Text that
/// does not parse passes: DataFusion reports its own parse error.
pub fn check(sql: &str, max_bytes: usize, max_depth: usize) -> Result<()> {
    if sql.len() > max_bytes {
        return Err(Error::Query(format!(
            "the query is {} bytes, longer than sql.max_query_bytes ({max_bytes} bytes)",
            sql.len()
        )));
    }
    let Ok(statements) = DFParserBuilder::new(sql)
        .build()
        .and_then(|mut p| p.parse_statements())
    else {
        return Ok(());
    };
    let mut depth = Depth {
        current: 0,
        max: max_depth,
    };
    for statement in &statements {
        if visit_statement(statement, &mut depth).is_break() {
            return Err(Error::Query(format!(
                "the query nests expressions more than {max_depth} deep (sql.max_expression_depth; an operator chain such as a+b+c counts one level per operator); split it or use IN (...)"
            )));
        }
    }
    Ok(())
}

fn visit_statement(statement: &Statement, depth: &mut Depth) -> ControlFlow<()> {
    match statement {
        Statement::Statement(s) => s.visit(depth),
        Statement::Explain(explain) => visit_statement(&explain.statement, depth),
        Statement::CopyTo(copy) => match &copy.source {
            CopyToSource::Query(q) => q.visit(depth),
            CopyToSource::Relation(_) => ControlFlow::Continue(()),
        },
        Statement::CreateExternalTable(_) | Statement::Reset(_) => ControlFlow::Continue(()),
    }
}

/// Nesting of expressions and subqueries on the path being visited.
struct Depth {
    current: usize,
    max: usize,
}

impl Depth {
    fn enter(&mut self) -> ControlFlow<()> {
        self.current += 1;
        if self.current > self.max {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn leave(&mut self) -> ControlFlow<()> {
        self.current -= 1;
        ControlFlow::Continue(())
    }
}

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.enter()
    }

    fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.leave()
    }

    fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.enter()
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.leave()
    }
}
