"""What one operation may ask for, measured in time linear in the document.

graphql-core's rules and Strawberry's depth and alias limiters walk a fragment again every
time it is spread, so a chain of fragments that each spread the previous one twice doubles
their work per fragment: about 150 tokens kept a process busy for minutes. Here each
fragment is measured once and its figures reused wherever it is spread, and a document
whose expansion is too large, too deep or too aliased is refused before graphql-core's
rules ever see it. Those rules are then bounded by the size of the expansion.

The same single pass prices an operation for the per-client cost budget (what it can
return: page sizes multiplied through nested lists) and refuses NUL characters in any
string argument or variable, which PostgreSQL cannot store.
"""

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from django.conf import settings
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    VariableNode,
    get_named_type,
    visit,
)
from graphql.language import Visitor
from strawberry.extensions import ValidationCache
from strawberry.types.graphql import OperationType

from chat import ratelimit
from chat.exceptions import RateLimited
from schema.documents import DOCUMENTS_CACHED, Identity
from schema.errors import bad_user_input, graphql_error


@dataclass(frozen=True)
class Shape:
    """A selection set with every fragment spread inlined."""

    fields: int = 0
    depth: int = 0  # of its deepest field, root fields being 0, as Strawberry counts
    aliases: int = 0

    def beside(self, other: "Shape") -> "Shape":
        return Shape(
            self.fields + other.fields, max(self.depth, other.depth), self.aliases + other.aliases
        )


class _Measure:
    """One pass over a document; each fragment is measured once (cycles count as empty:
    graphql-core's NoFragmentCycles rule reports them)."""

    def __init__(self, document: DocumentNode) -> None:
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.done: dict[str, Shape] = {}
        self.open: set[str] = set()

    def fragment(self, name: str) -> Shape:
        if name in self.done:
            return self.done[name]
        definition = self.fragments.get(name)
        if definition is None or name in self.open:
            return Shape()  # unknown (KnownFragmentNames reports it) or a cycle
        self.open.add(name)
        shape = self.done[name] = self.selection_set(definition.selection_set)
        self.open.discard(name)
        return shape

    def selection_set(self, selection_set: SelectionSetNode | None) -> Shape:
        shape = Shape()
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                inner = self.selection_set(selection.selection_set)
                # Introspection (`__schema`, `__type`) is as deep as the type system, not
                # the data: its depth is not counted, as in graphql-depth-limit.
                meta = selection.name.value.startswith("__")
                deeper = inner.depth + 1 if selection.selection_set and not meta else 0
                shape = shape.beside(
                    Shape(1 + inner.fields, deeper, inner.aliases + bool(selection.alias))
                )
            elif isinstance(selection, InlineFragmentNode):
                shape = shape.beside(self.selection_set(selection.selection_set))
            elif isinstance(selection, FragmentSpreadNode):
                shape = shape.beside(self.fragment(selection.name.value))
        return shape


def check_document(document: DocumentNode) -> GraphQLError | None:
    """The first limit the document breaks, or None. Linear in the document's size, and
    worked out once per document."""
    return _check(Identity(document))


@lru_cache(maxsize=DOCUMENTS_CACHED)
def _check(key: Identity) -> GraphQLError | None:
    document = key.document
    measure = _Measure(document)
    total, depth, aliases = 0, 0, 0
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            shape = measure.selection_set(definition.selection_set)
            depth, aliases = max(depth, shape.depth), aliases + shape.aliases
            if shape.depth > settings.GRAPHQL_MAX_DEPTH:
                name = definition.name.value if definition.name else "anonymous"
                return graphql_error(
                    f"'{name}' exceeds maximum operation depth of {settings.GRAPHQL_MAX_DEPTH}",
                    "GRAPHQL_VALIDATION_FAILED",
                )
        elif isinstance(definition, FragmentDefinitionNode):
            # graphql-core validates every fragment, used or not.
            shape = measure.fragment(definition.name.value)
        else:
            continue
        total += shape.fields
    if aliases > settings.GRAPHQL_MAX_ALIASES:
        return graphql_error(
            f"{aliases} aliases found. Allowed: {settings.GRAPHQL_MAX_ALIASES}",
            "GRAPHQL_VALIDATION_FAILED",
        )
    if total > settings.GRAPHQL_MAX_SELECTIONS:
        return graphql_error(
            f"The document selects {total} fields once its fragments are inlined. "
            f"Allowed: {settings.GRAPHQL_MAX_SELECTIONS}",
            "GRAPHQL_VALIDATION_FAILED",
        )
    if _has_nul_literal(document):
        return bad_user_input("Strings cannot contain NUL characters.")
    return None


class _NulFinder(Visitor):
    found = False

    def enter_string_value(self, node: StringValueNode, *_: Any) -> Any:
        if "\x00" in node.value:
            self.found = True
            return self.BREAK
        return None


def _has_nul_literal(document: DocumentNode) -> bool:
    finder = _NulFinder()
    visit(document, finder)
    return finder.found


def has_nul(value: Any) -> bool:
    """Whether a string anywhere inside decoded JSON holds a NUL (iterative: variables may
    nest as deep as the JSON parser allows)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


# --- cost -----------------------------------------------------------------------------


def _unwrap(type_: Any) -> tuple[Any, bool]:
    """The named type, and whether the field returns a list."""
    is_list = False
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        is_list = is_list or isinstance(type_, GraphQLList)
        type_ = type_.of_type
    return type_, is_list


class _Price:
    """What an operation can return: every object counts 1 (scalars are free: they come
    with their object's row), times the length of every list above it. Paged fields count
    their `first`/`last` (the page cap when not given); `edges` is the page itself; any
    other list counts the page cap."""

    def __init__(
        self, schema: GraphQLSchema, document: DocumentNode, variables: dict[str, Any]
    ) -> None:
        self.schema = schema
        self.variables = variables
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.done: dict[str, int] = {}
        self.open: set[str] = set()
        self.cap = settings.GRAPHQL_MAX_PAGE_SIZE

    def fragment(self, name: str) -> int:
        if name not in self.done:
            definition = self.fragments.get(name)
            if definition is None or name in self.open:
                return 0
            self.open.add(name)
            parent = self.schema.get_type(definition.type_condition.name.value)
            self.done[name] = self.selection_set(parent, definition.selection_set)
            self.open.discard(name)
        return self.done[name]

    def selection_set(self, parent: Any, selection_set: SelectionSetNode | None) -> int:
        cost = 0
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                cost += self.field(parent, selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                cost += self.selection_set(inner, selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                cost += self.fragment(selection.name.value)
        return cost

    def field(self, parent: Any, node: FieldNode) -> int:
        definition = getattr(get_named_type(parent), "fields", {}).get(node.name.value)
        if definition is None or node.selection_set is None:
            return 0
        returned, is_list = _unwrap(definition.type)
        times = 1
        if "first" in definition.args or "last" in definition.args:
            times = self._page(node)
        elif is_list and node.name.value != "edges":
            times = self.cap
        return 1 + times * self.selection_set(returned, node.selection_set)

    def _page(self, node: FieldNode) -> int:
        for argument in node.arguments or ():  # None when the field has none written
            if argument.name.value not in {"first", "last"}:
                continue
            value = argument.value
            if isinstance(value, VariableNode):
                value = self.variables.get(value.name.value)
            elif isinstance(value, IntValueNode):
                value = int(value.value)
            if isinstance(value, int) and 0 <= value <= self.cap:
                return value
        return self.cap


def operation_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: dict[str, Any] | None,
) -> int:
    """The price of the operation that will run (0 when none can be chosen: execution
    reports that). Linear once `check_document` has passed."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1:
        return 0
    operation = operations[0]
    root = schema.get_root_type(operation.operation)
    if root is None:
        return 0
    price = _Price(schema, document, variables or {})
    return max(1, price.selection_set(root, operation.selection_set))


class OperationLimits(ValidationCache):
    """Validation, with the linear checks first and the query budget charged after.

    A document these checks refuse never reaches graphql-core's rules (Strawberry skips
    its validation when an extension has already set errors). Executions with a root value
    are the fan-out's shared subscription events (`schema.fanout`): the subscription was
    charged once, when it was made.

    The budget lives in Redis, and this hook runs on the event loop: the charge is awaited,
    never waited for, or one slow Redis round trip would hold up every socket of the
    process. `schema.execute_sync` cannot await: it gets `BlockingOperationLimits`.
    """

    def __init__(self, maxsize: int | None, rules: tuple[Any, ...] = ()) -> None:
        super().__init__(maxsize=maxsize)
        self.rules = rules
        self.cached_validate_document = _validation_cache(maxsize)

    async def on_validate(self) -> AsyncIterator[None]:
        error, cost = self._refusal()
        if error is None and cost:
            error = _over_budget(cost, await _spent(self._subject(), cost))
        self._conclude(error)
        yield

    def _conclude(self, error: GraphQLError | None) -> None:
        """Refuse with `error`, or run graphql-core's rules (cached per document)."""
        context = self.execution_context
        if error is not None:
            context.pre_execution_errors = [error]
            return
        context.pre_execution_errors = self.cached_validate_document(
            context.schema._schema,
            context.graphql_document,
            (*context.validation_rules, *self.rules),
        )

    def _refusal(self) -> tuple[GraphQLError | None, int]:
        """A refusal, or else the budget this operation must spend (0: none)."""
        context = self.execution_context
        document = context.graphql_document
        if document is None:
            return None, 0
        if has_nul(context.variables):
            return bad_user_input("Strings cannot contain NUL characters."), 0
        try:
            error = check_document(document)
        except RecursionError:
            error = graphql_error("The document nests too deeply.", "GRAPHQL_VALIDATION_FAILED")
        if error is None:
            error = _transport_refusal(context)
        if error is not None or context.root_value is not None:
            return error, 0
        cost = operation_cost(
            context.schema._schema, document, context.operation_name, context.variables
        )
        budget = settings.GRAPHQL_COST_RATE_BURST
        if cost > budget:
            return graphql_error(
                f"This operation could return {cost} items; at most {budget} may be asked "
                "for at once. Ask for smaller pages.",
                "GRAPHQL_VALIDATION_FAILED",
                cost=cost,
                maxCost=budget,
            ), 0
        return None, cost

    def _subject(self) -> str:
        context = self.execution_context.context
        user = getattr(context, "user", None)
        return str(user.pk) if user is not None else f"address:{_address(context)}"


class BlockingOperationLimits(OperationLimits):
    """`OperationLimits` for `schema.execute_sync`, which has no loop to hold up."""

    def on_validate(self) -> Iterator[None]:  # type: ignore[override]
        error, cost = self._refusal()
        if error is None and cost:
            error = _over_budget(cost, _spent_now(self._subject(), cost))
        self._conclude(error)
        yield


@cache
def _validation_cache(maxsize: int | None) -> Callable[..., list[GraphQLError]]:
    """Strawberry's validation cache, with the document keyed by identity (`Identity`).
    One per size, shared by every request, as Strawberry shares its own."""
    from strawberry.schema.schema import validate_document

    @lru_cache(maxsize=maxsize)
    def validate(schema: GraphQLSchema, key: Identity, rules: tuple) -> list[GraphQLError]:
        return validate_document(schema, key.document, rules)

    def cached(schema: GraphQLSchema, document: DocumentNode, rules: Any) -> list[GraphQLError]:
        return validate(schema, Identity(document), tuple(rules))

    return cached


async def _spent(subject: str, cost: int) -> RateLimited | None:
    try:
        await ratelimit.ahit("graphql_cost", subject, cost)
    except RateLimited as limited:
        return limited
    return None


def _spent_now(subject: str, cost: int) -> RateLimited | None:
    try:
        ratelimit.hit("graphql_cost", subject, cost)
    except RateLimited as limited:
        return limited
    return None


def _over_budget(cost: int, limited: RateLimited | None) -> GraphQLError | None:
    if limited is None:
        return None
    return graphql_error(
        "Too many expensive requests: the query budget is spent. Try again shortly.",
        "RATE_LIMITED",
        retryAfter=limited.retry_after,
        cost=cost,
    )


def _transport_refusal(context: Any) -> GraphQLError | None:
    """A subscription over plain HTTP would be executed as a query and fail inside; say
    what the client must do instead."""
    try:
        subscribing = context.operation_type is OperationType.SUBSCRIPTION
    except RuntimeError:  # no operation to choose: execution reports it
        return None
    if subscribing and not getattr(context.context, "can_subscribe", True):
        return graphql_error(
            "Subscriptions need a WebSocket (graphql-transport-ws) or an HTTP request that "
            'accepts multipart/mixed;subscriptionSpec="1.0" or text/event-stream.',
            "BAD_REQUEST",
        )
    return None


def _address(context: Any) -> str:
    return getattr(context, "client_address", None) or "unknown"
