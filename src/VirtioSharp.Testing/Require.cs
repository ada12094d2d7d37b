using VirtioSharp.Memory;

namespace VirtioSharp.Testing;

/// <summary>The library's checks: a failed one throws <see cref="InvalidOperationException"/> with the message.</summary>
internal static class Require
{
    public static void That(bool condition, string message)
    {
        if (!condition) throw new InvalidOperationException(message);
    }

    public static void Equal<T>(T expected, T actual, string what)
    {
        if (!EqualityComparer<T>.Default.Equals(expected, actual))
            throw new InvalidOperationException($"{what}: expected {expected}, got {actual}");
    }

    public static void Ok(MemStatus status, string what) => Equal(MemStatus.Ok, status, what);
}
