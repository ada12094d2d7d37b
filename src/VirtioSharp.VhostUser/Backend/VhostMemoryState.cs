using Microsoft.Extensions.Logging;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.VhostUser.Backend;

/// <summary>
/// The memory regions the front-end shared (SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG) and the fds behind them. A new
/// table is validated and mapped whole before it replaces the old one; the caller pauses the rings around
/// <see cref="Swap"/>. Owns every region fd it holds.
/// </summary>
internal sealed class VhostMemoryState(bool allowUnsealed, ILogger log) : IDisposable
{
    /// <summary>Regions at most (GET_MAX_MEM_SLOTS).</summary>
    public const int MaxMemSlots = 32;
    /// <summary>Regions in one SET_MEM_TABLE (the message's fixed array).</summary>
    public const int BaselineRegions = 8;
    private readonly List<(VhostMemoryRegion Region, SafeFd Fd)> _regions = new();

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

    /// <summary>ADD_MEM_REG message: one region and its fd (kept once mapped).</summary>
    public Pending Add(ref PayloadReader r, in VhostMessage m)
    {
        m.ExpectFds(1);
        r.U64();
        var pending = Add(VhostMemoryRegion.Parse(r.Bytes(VhostMemoryRegion.Length)), m.Fd(0));
        m.Keep(m.Fd(0));
        return pending;
    }

    /// <summary>REM_MEM_REG message.</summary>
    public Pending Remove(ref PayloadReader r)
    {
        r.U64();
        return Remove(VhostMemoryRegion.Parse(r.Bytes(VhostMemoryRegion.Length)));
    }

    /// <summary>SET_MEM_TABLE: the whole table. Returns the mapped table to swap in; the fds now belong to it.</summary>
    public Pending SetTable(IReadOnlyList<VhostMemoryRegion> regions, IReadOnlyList<SafeFd> fds)
    {
        if (regions.Count == 0 || regions.Count > BaselineRegions) throw new VhostProtocolException($"SET_MEM_TABLE: {regions.Count} regions (1..{BaselineRegions} allowed)");
        return Prepare([.. regions.Zip(fds)], []);
    }

    /// <summary>ADD_MEM_REG: one more region.</summary>
    public Pending Add(VhostMemoryRegion region, SafeFd fd)
    {
        if (_regions.Count >= MaxMemSlots) throw new VhostProtocolException($"ADD_MEM_REG: more than {MaxMemSlots} memory regions");
        return Prepare([.. _regions, (region, fd)], []);
    }

    /// <summary>REM_MEM_REG: the region with these addresses; its fd is closed once the new table is swapped in.</summary>
    public Pending Remove(VhostMemoryRegion region)
    {
        int i = _regions.FindIndex(x => x.Region.GuestPhysAddr == region.GuestPhysAddr && x.Region.MemorySize == region.MemorySize && x.Region.UserspaceAddr == region.UserspaceAddr);
        if (i < 0) throw new VhostProtocolException($"REM_MEM_REG: no region at gpa 0x{region.GuestPhysAddr:x} size 0x{region.MemorySize:x}");
        return Prepare([.. _regions.Where((_, k) => k != i)], [_regions[i].Fd]);
    }

    // Maps first (validation throws before anything changes), so a refused table leaves the old one in place.
    private Pending Prepare(List<(VhostMemoryRegion Region, SafeFd Fd)> next, List<SafeFd> retired)
    {
        // REM_MEM_REG may take the last region away: no table, so rings cannot start until memory comes back.
        var table = next.Count == 0 ? null : VhostMemoryTable.Map(next.Select(x => x.Region).ToList(), next.Select(x => x.Fd).ToList(), allowUnsealed, log);
        return new Pending(table, next, retired);
    }

    /// <summary>Installs a prepared table (rings paused): the old mapping and the fds no longer in use are released.</summary>
    public void Swap(Pending p)
    {
        var old = Table;
        var keep = p.Regions.Select(x => x.Fd).ToHashSet();
        var drop = _regions.Select(x => x.Fd).Where(fd => !keep.Contains(fd)).Concat(p.Retired).Distinct().ToList();
        Table = p.Table;
        _regions.Clear();
        _regions.AddRange(p.Regions);
        old?.Dispose();
        foreach (var fd in drop) fd.Dispose();
    }

    public string Describe() => _regions.Count == 0 ? "no regions" : string.Join(", ", _regions.Select(x => $"gpa 0x{x.Region.GuestPhysAddr:x}+0x{x.Region.MemorySize:x}"));

    public void Dispose()
    {
        Table?.Dispose();
        Table = null;
        foreach (var (_, fd) in _regions) fd.Dispose();
        _regions.Clear();
    }

    /// <summary>A mapped table waiting to be swapped in.</summary>
    public sealed record Pending(VhostMemoryTable? Table, List<(VhostMemoryRegion Region, SafeFd Fd)> Regions, List<SafeFd> Retired);
}
