// Validates Adaptive Cards with the official `adaptivecards` package: reads a Teams webhook
// message (or a bare card) as JSON on stdin, parses its card with AdaptiveCard.parse, and
// exits 1 listing every parse or validation event (unknown element or action types, missing
// required properties, bad values, version problems). Prints "VALID <version> <n> actions".
const AdaptiveCards = require("adaptivecards/dist/adaptivecards.js");

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const message = JSON.parse(input);
  const content =
    message.type === "message" ? message.attachments[0].content : message;
  if (message.type === "message") {
    const attachment = message.attachments[0];
    if (attachment.contentType !== "application/vnd.microsoft.card.adaptive") {
      console.error("attachment contentType is " + attachment.contentType);
      process.exit(1);
    }
  }
  const card = new AdaptiveCards.AdaptiveCard();
  const context = new AdaptiveCards.SerializationContext();
  card.parse(content, context);
  const problems = [];
  for (let i = 0; i < context.eventCount; i++) {
    const event = context.getEventAt(i);
    problems.push("parse: " + AdaptiveCards.ValidationEvent[event.event] + ": " + event.message);
  }
  for (const event of card.validateProperties().validationEvents) {
    problems.push("validate: " + AdaptiveCards.ValidationEvent[event.event] + ": " + event.message);
  }
  if (String(card.version) !== "1.5") {
    problems.push("version is " + card.version);
  }
  if (problems.length > 0) {
    console.error(problems.join("\n"));
    process.exit(1);
  }
  const actions = (input.match(/"Action\.OpenUrl"/g) || []).length;
  console.log("VALID " + card.version + " " + actions + " actions");
});
