using VirtioSharp.Interop;

namespace VirtioSharp.Fuzz.Targets;

/// <summary>
/// Leak check for the targets that pass descriptors around: the descriptors of the kinds the back-end handles
/// (memfds, eventfds, sockets, /dev/null; not regular files, which the runtime opens lazily for assemblies, nor
/// pipes, which it makes for its own threads). Cheap when nothing changed: an input whose end finds as many open
/// descriptors as its start needs no readlink of each. The count is one fstat of /proc/self/fd (Linux 6.2 reports the
/// number of open descriptors as its size); listing the directory cost ~0.7 ms, most of a memory-iotlb input.
/// </summary>
internal static unsafe class FdCensus
{
    private static readonly string[] Kinds = ["/memfd:", "anon_inode:", "socket:", "/dev/null"];
    private static HashSet<string> _baseline = [];
    private static int _count = -1;

    private static readonly int FdDir = LibC.Open("/proc/self/fd", LibC.O_RDONLY | LibC.O_DIRECTORY | LibC.O_CLOEXEC, 0);
    // Older kernels report size 0: then the census lists the directory (decided once, so counts stay comparable).
    private static readonly bool SizeIsCount = FstatSize() > 0;

    private static long FstatSize()
    {
        byte* st = stackalloc byte[256];
        // st_size is at offset 48 in both x86-64's struct stat and the generic layout (arm64).
        return FdDir >= 0 && LibC.FStat(FdDir, st) == 0 ? *(long*)(st + 48) : 0;
    }

    private static int Count() => SizeIsCount ? (int)FstatSize() : Directory.GetFileSystemEntries("/proc/self/fd").Length;

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
