"""Example: the typed messages the orders service exchanges (pydantic models)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class OrderPlaced(BaseModel):
    """A customer placed an order; billing charges it."""

    order_id: str
    customer_id: str
    amount_cents: int = Field(description="Total to charge; a non-positive amount is poison.")
    items: list[str] = Field(default_factory=list)


class PaymentCharged(BaseModel):
    """Billing charged an order; notifications tells the customer."""

    order_id: str
    customer_id: str
    amount_cents: int
    charge_id: str
