"""GraphQL documents the integration tests send."""

RECORD = """mutation($input: InteractionInput!) {
  recordInteraction(input: $input) { id version position duplicate suppressed }
}"""

RECORD_MANY = """mutation($inputs: [InteractionInput!]!) {
  recordInteractions(inputs: $inputs) { id version position duplicate suppressed }
}"""

TRAITS = (
    """mutation($input: TraitsInput!) { updateTraits(input: $input) { id version position } }"""
)

GRANT = """mutation($input: ConsentInput!) { grantConsent(input: $input) { version position } }"""

WITHDRAW = """mutation($input: ConsentInput!) {
  withdrawConsent(input: $input) { version position }
}"""

PROFILE = """query($id: ID!, $min: Long, $first: Int = 10) {
  profile(customerId: $id, minPosition: $min) {
    customerId version traits canEmail canPersonalize interactionCounts firstSeenAt lastSeenAt
    consents { purpose granted source policyVersion changedAt }
    recentInteractions(first: $first) { eventId type occurredAt channel sessionId properties }
  }
}"""
