namespace VirtioSharp.Fuzz.Targets;

/// <summary>
/// This process's open descriptors of the kinds the back-end handles (memfds, eventfds, sockets, pipes, /dev/null),
/// as "fd -> target". Regular files are left out: the runtime opens assemblies lazily as new code paths run.
/// </summary>
internal static class FdCensus
{
    private static readonly string[] Kinds = ["/memfd:", "anon_inode:", "socket:", "/dev/null"];

    public static HashSet<string> Take()
    {
        var open = new HashSet<string>();
        foreach (var entry in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            string? target;
            try { target = new FileInfo(entry).LinkTarget; }
            catch (IOException) { continue; }   // closed between listing and reading (the enumeration's own fd)
            if (target is not null && Kinds.Any(k => target.StartsWith(k, StringComparison.Ordinal))) open.Add($"{Path.GetFileName(entry)} -> {target}");
        }
        return open;
    }

    /// <summary>Throws <see cref="InvariantViolationException"/> naming every descriptor opened since <paramref name="before"/> and still open.</summary>
    public static void AssertNoneLeaked(HashSet<string> before, string what)
    {
        var leaked = Take();
        leaked.ExceptWith(before);
        Invariant.That(leaked.Count == 0, $"{leaked.Count} descriptors left open {what}: {string.Join(", ", leaked)}");
    }
}
