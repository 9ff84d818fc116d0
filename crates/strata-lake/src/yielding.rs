//! Every operator of a query plan yields to its runtime now and then.
//!
//! DataFusion makes the leaves of a plan cooperative, which is enough while
//! every output batch costs an input batch. A cross join breaks that: one
//! input batch feeds billions of output rows, and the aggregate above it
//! polls the join in a loop that never returns to the runtime, so neither a
//! statement timeout nor a cancellation could stop it until it ended. With
//! a `CooperativeExec` over every operator, each batch anywhere in the plan
//! spends the task's budget, the task yields, and a cancelled query stops.

use std::sync::Arc;

use deltalake::datafusion::common::config::ConfigOptions;
use deltalake::datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use deltalake::datafusion::error::Result;
use deltalake::datafusion::physical_optimizer::PhysicalOptimizerRule;
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::physical_plan::coop::CooperativeExec;

#[derive(Debug, Default)]
pub(crate) struct YieldEverywhere;

impl PhysicalOptimizerRule for YieldEverywhere {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if node.is::<CooperativeExec>() {
                return Ok(Transformed::no(node));
            }
            let wrapped: Arc<dyn ExecutionPlan> = Arc::new(CooperativeExec::new(node));
            Ok(Transformed::yes(wrapped))
        })
        .data()
    }

    fn name(&self) -> &str {
        "yield_everywhere"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
