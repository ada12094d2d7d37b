namespace VirtioSharp.Fuzz.Targets;

/// <summary>A harness's own oracle saw the library break a promise: always a finding, never caught by a target.</summary>
public sealed class InvariantViolationException(string message) : Exception(message);
