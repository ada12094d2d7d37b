using Microsoft.Extensions.Logging;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.VhostUser.Backend;

/// <summary>
/// The memory regions the front-end shared (SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG), the fds behind them and their
/// mappings. A new table is validated and its new regions mapped before it replaces the old one (a refused table
/// leaves the old one in place); regions that stay keep their mapping, so ADD_MEM_REG never needs the address space
/// twice. The total is bounded by <c>maxBytes</c>. The caller pauses the rings around <see cref="Swap"/>. Owns every
/// region fd and mapping it holds.
/// </summary>
internal sealed class VhostMemoryState(bool allowUnsealed, ulong maxBytes, ILogger log) : IDisposable
{
    /// <summary>Regions at most (GET_MAX_MEM_SLOTS).</summary>
    public const int MaxMemSlots = 32;
    /// <summary>Regions in one SET_MEM_TABLE (the message's fixed array).</summary>
    public const int BaselineRegions = 8;
    private readonly List<Entry> _regions = new();

    /// <summary>One region, its fd, and its mapping once mapped (compared by reference: the same region may be sent twice).</summary>
    internal sealed class Entry(VhostMemoryRegion region, SafeFd fd)
    {
        public VhostMemoryRegion Region { get; } = region;
        public SafeFd Fd { get; } = fd;
        public MappedRegion? Map { get; set; }
    }

    public VhostMemoryTable? Table { get; private set; }

    /// <summary>SET_MEM_TABLE message: up to <see cref="BaselineRegions"/> regions, one fd each; the fds are kept once the table maps.</summary>
    public Pending SetTable(ref PayloadReader r, in VhostMessage m)
    {
        uint n = r.U32();
        r.U32();
        if (n == 0 || n > BaselineRegions) throw new VhostProtocolException($"SET_MEM_TABLE: {n} regions (1..{BaselineRegions} allowed)");
        var regions = new List<VhostMemoryRegion>();
        for (int i = 0; i < n; i++) regions.Add(VhostMemoryRegion.Parse(r.Bytes(VhostMemoryRegion.Length)));
        m.ExpectFds((int)n);
        var fds = new List<SafeFd>();
        for (int i = 0; i < n; i++) fds.Add(m.Fd(i));
        var pending = SetTable(regions, fds);
        foreach (var fd in fds) m.Keep(fd);
        return pending;
    }

    /// <summary>
    /// ADD_MEM_REG message: one region and its fd (kept once mapped). Null when the region is already in the table with
    /// the same addresses: QEMU 7.2 repeats ADD_MEM_REG once per vhost device of a multiqueue virtio-net (one per queue
    /// pair, all on this connection), so a repeat changes nothing and its fd is closed with the message.
    /// </summary>
    public Pending? Add(ref PayloadReader r, in VhostMessage m)
    {
        m.ExpectFds(1);
        r.U64();
        var region = VhostMemoryRegion.Parse(r.Bytes(VhostMemoryRegion.Length));
        if (_regions.Any(x => x.Region == region)) return null;
        var pending = Add(region, m.Fd(0));
        m.Keep(m.Fd(0));
        return pending;
    }

    /// <summary>REM_MEM_REG message; null when no region has these addresses (the repeat from another queue pair's device).</summary>
    public Pending? Remove(ref PayloadReader r)
    {
        r.U64();
        var region = VhostMemoryRegion.Parse(r.Bytes(VhostMemoryRegion.Length));
        return Find(region) < 0 ? null : Remove(region);
    }

    private int Find(VhostMemoryRegion region) =>
        _regions.FindIndex(x => x.Region.GuestPhysAddr == region.GuestPhysAddr && x.Region.MemorySize == region.MemorySize && x.Region.UserspaceAddr == region.UserspaceAddr);

    /// <summary>SET_MEM_TABLE: the whole table. Returns the mapped table to swap in; the fds now belong to it.</summary>
    public Pending SetTable(IReadOnlyList<VhostMemoryRegion> regions, IReadOnlyList<SafeFd> fds)
    {
        if (regions.Count == 0 || regions.Count > BaselineRegions) throw new VhostProtocolException($"SET_MEM_TABLE: {regions.Count} regions (1..{BaselineRegions} allowed)");
        return Prepare([.. regions.Zip(fds).Select(x => new Entry(x.First, x.Second))], []);
    }

    /// <summary>ADD_MEM_REG: one more region.</summary>
    public Pending Add(VhostMemoryRegion region, SafeFd fd)
    {
        if (_regions.Count >= MaxMemSlots) throw new VhostProtocolException($"ADD_MEM_REG: more than {MaxMemSlots} memory regions");
        return Prepare([.. _regions, new Entry(region, fd)], []);
    }

    /// <summary>REM_MEM_REG: the region with these addresses; its fd is closed once the new table is swapped in.</summary>
    public Pending Remove(VhostMemoryRegion region)
    {
        int i = Find(region);
        if (i < 0) throw new VhostProtocolException($"REM_MEM_REG: no region at gpa 0x{region.GuestPhysAddr:x} size 0x{region.MemorySize:x}");
        return Prepare([.. _regions.Where((_, k) => k != i)], [_regions[i]]);
    }

    // Validates and maps the new regions first, so a refused table leaves the old one in place.
    private Pending Prepare(List<Entry> next, List<Entry> retired)
    {
        VhostMemoryTable.Validate(next.Select(x => x.Region).ToList());
        ulong total = 0;
        foreach (var e in next)
        {
            ulong bytes = e.Region.MmapOffset + e.Region.MemorySize;   // no overflow: validated
            if (bytes > maxBytes - total)
                throw new VhostProtocolException($"memory table of {next.Count} regions maps more than the back-end's limit of {maxBytes >> 30} GiB");
            total += bytes;
        }
        var fresh = new List<Entry>();
        try
        {
            for (int i = 0; i < next.Count; i++)
            {
                if (next[i].Map is not null) continue;
                fresh.Add(next[i]);
                next[i].Map = VhostMemoryTable.MapRegion(next[i].Region, next[i].Fd, i, allowUnsealed, log);
            }
        }
        catch
        {
            foreach (var e in fresh) { e.Map?.Dispose(); e.Map = null; }
            throw;
        }
        // REM_MEM_REG may take the last region away: no table, so rings cannot start until memory comes back.
        var table = next.Count == 0 ? null : VhostMemoryTable.Build(next.Select(x => (x.Region, x.Map!)).ToList());
        return new Pending(table, next, retired);
    }

    /// <summary>Installs a prepared table (rings paused): the mappings and fds no longer in use are released.</summary>
    public void Swap(Pending p)
    {
        var keep = p.Regions.ToHashSet();
        var drop = _regions.Where(e => !keep.Contains(e)).Concat(p.Retired).Distinct().ToList();
        Table = p.Table;
        _regions.Clear();
        _regions.AddRange(p.Regions);
        foreach (var e in drop) { e.Map?.Dispose(); e.Map = null; e.Fd.Dispose(); }
    }

    public string Describe() => _regions.Count == 0 ? "no regions" : string.Join(", ", _regions.Select(x => $"gpa 0x{x.Region.GuestPhysAddr:x}+0x{x.Region.MemorySize:x}"));

    /// <summary>Bytes mapped for the current table.</summary>
    public ulong MappedBytes => _regions.Aggregate(0UL, (a, e) => a + (e.Map is { } m ? (ulong)m.Length : 0));

    public void Dispose()
    {
        Table = null;
        foreach (var e in _regions) { e.Map?.Dispose(); e.Fd.Dispose(); }
        _regions.Clear();
    }

    /// <summary>A mapped table waiting to be swapped in.</summary>
    public sealed class Pending
    {
        internal Pending(VhostMemoryTable? table, IReadOnlyList<Entry> regions, IReadOnlyList<Entry> retired) => (Table, Regions, Retired) = (table, regions, retired);
        internal VhostMemoryTable? Table { get; }
        internal IReadOnlyList<Entry> Regions { get; }
        internal IReadOnlyList<Entry> Retired { get; }
    }
}
