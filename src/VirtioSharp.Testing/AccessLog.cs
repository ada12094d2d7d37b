using VirtioSharp.Memory;

namespace VirtioSharp.Testing;

/// <summary>Every access a <see cref="LoggingMemory{TInner}"/> saw, in order.</summary>
public sealed class AccessLog
{
    /// <summary>All accesses, checks and refusals included, oldest first.</summary>
    public List<DeviceAccess> Entries { get; } = new();

    /// <summary>Accesses that reached memory (succeeded and were not mere permission checks).</summary>
    public IEnumerable<DeviceAccess> Touched => Entries.Where(e => !e.IsCheck && e.Status == MemStatus.Ok);
    /// <summary>Writes that reached memory.</summary>
    public IEnumerable<DeviceAccess> Writes => Touched.Where(e => e.Access == Access.Write);
    /// <summary>Accesses (and checks) the address space refused.</summary>
    public IEnumerable<DeviceAccess> Refused => Entries.Where(e => e.Status != MemStatus.Ok);

    /// <summary>Forgets every entry.</summary>
    public void Clear() => Entries.Clear();
    internal void Add(DeviceAccess a) => Entries.Add(a);

    /// <summary>
    /// Throws <see cref="InvalidOperationException"/> unless every access that reached memory lies inside one of the
    /// allowed [start, end) bus ranges.
    /// </summary>
    public void AssertTouchedOnlyWithin(params (ulong Start, ulong End)[] allowed)
    {
        foreach (var t in Touched)
        {
            bool inside = allowed.Any(r => t.Addr >= r.Start && t.Addr + t.Length <= r.End);
            Require.That(inside, $"device touched 0x{t.Addr:x}+{t.Length} ({t.Access}) outside every allowed range");
        }
    }
}
