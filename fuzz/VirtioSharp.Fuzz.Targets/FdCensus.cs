namespace VirtioSharp.Fuzz.Targets;

/// <summary>
/// Counts this process's open descriptors of the kinds the back-end handles (memfds, eventfds, sockets, pipes,
/// /dev/null). Regular files are left out: the runtime opens assemblies lazily as new code paths run.
/// </summary>
internal static class FdCensus
{
    private static readonly string[] Kinds = ["/memfd:", "anon_inode:", "socket:", "pipe:", "/dev/null"];

    public static int Count()
    {
        int n = 0;
        foreach (var entry in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            string? target;
            try { target = new FileInfo(entry).LinkTarget; }
            catch (IOException) { continue; }   // closed between listing and reading (the enumeration's own fd)
            if (target is not null && Kinds.Any(k => target.StartsWith(k, StringComparison.Ordinal))) n++;
        }
        return n;
    }
}
