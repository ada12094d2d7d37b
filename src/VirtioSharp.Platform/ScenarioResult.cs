namespace VirtioSharp.Platform;

/// <summary>One run of a scenario: what was set up, what the policy said, what happened, and the proof.</summary>
public sealed record ScenarioResult(string Name, string Platform, string Transport, string Decision, ScenarioOutcome Outcome,
    ScenarioOutcome Expected, IReadOnlyList<string> Evidence, IReadOnlyList<string> Trace)
{
    /// <summary>The outcome matched the expectation.</summary>
    public bool AsExpected => Outcome == Expected;
}
