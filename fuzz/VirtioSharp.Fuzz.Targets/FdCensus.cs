namespace VirtioSharp.Fuzz.Targets;

/// <summary>
/// Leak check for the targets that pass descriptors around: the descriptors of the kinds the back-end handles
/// (memfds, eventfds, sockets, /dev/null; not regular files, which the runtime opens lazily for assemblies, nor
/// pipes, which it makes for its own threads). Cheap when nothing changed: an input whose end finds as many entries in
/// /proc/self/fd as its start needs no readlink of each.
/// </summary>
internal static class FdCensus
{
    private static readonly string[] Kinds = ["/memfd:", "anon_inode:", "socket:", "/dev/null"];
    private static HashSet<string> _baseline = [];
    private static int _count = -1;

    private static int Count() => Directory.GetFileSystemEntries("/proc/self/fd").Length;

    private static HashSet<string> Take()
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

    /// <summary>At the start of an input: what is open now is what must be open at its end.</summary>
    public static void Start()
    {
        int n = Count();
        if (n == _count) return;
        _baseline = Take();
        _count = n;
    }

    /// <summary>At the end: throws <see cref="InvariantViolationException"/> naming every tracked descriptor opened since <see cref="Start"/> and still open.</summary>
    public static void AssertNoneLeaked(string what)
    {
        int n = Count();
        if (n == _count) return;
        var now = Take();
        var leaked = new HashSet<string>(now);
        leaked.ExceptWith(_baseline);
        Invariant.That(leaked.Count == 0, $"{leaked.Count} descriptors left open {what}: {string.Join(", ", leaked)}");
        // Only untracked kinds changed (an assembly loaded): the new state is the baseline.
        _baseline = now;
        _count = n;
    }
}
