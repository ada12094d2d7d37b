namespace VirtioSharp.Fuzz.Targets;

/// <summary>One fuzz target: decodes <paramref name="input"/> into calls; throws only when it finds a bug.</summary>
public delegate void FuzzTarget(ReadOnlySpan<byte> input);
