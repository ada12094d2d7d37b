namespace VirtioSharp.Fuzz.Targets;

/// <summary>Oracle checks inside the targets.</summary>
internal static class Invariant
{
    public static void That(bool condition, string what)
    {
        if (!condition) throw new InvariantViolationException(what);
    }
}
