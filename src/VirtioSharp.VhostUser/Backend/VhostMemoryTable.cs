using Microsoft.Extensions.Logging;
using VirtioSharp.Memory;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.VhostUser.Backend;

/// <summary>
/// The front-end's memory as the back-end mapped it: each region is known by guest-physical address and by the
/// front-end's user address. Validated on arrival: sizes non-zero, no 64-bit overflow, no overlap in either space.
/// The mappings belong to <see cref="VhostMemoryState"/>, which keeps a region's mapping across table changes
/// (ADD_MEM_REG maps only the new region) and unmaps it when the region goes.
/// </summary>
internal sealed class VhostMemoryTable
{
    private readonly (VhostMemoryRegion Region, MappedRegion Map, nint Host)[] _regions;

    private VhostMemoryTable((VhostMemoryRegion, MappedRegion, nint)[] regions, GuestMemory memory)
    {
        _regions = regions;
        Memory = memory;
    }

    public GuestMemory Memory { get; }
    public int Count => _regions.Length;
    public IEnumerable<VhostMemoryRegion> Regions => _regions.Select(r => r.Region);

    public static void Validate(IReadOnlyList<VhostMemoryRegion> regions)
    {
        for (int i = 0; i < regions.Count; i++)
        {
            var r = regions[i];
            if (r.MemorySize == 0) throw new VhostProtocolException($"memory region {i} has size 0");
            if (r.GuestPhysAddr + r.MemorySize < r.GuestPhysAddr || r.UserspaceAddr + r.MemorySize < r.UserspaceAddr ||
                r.MmapOffset + r.MemorySize < r.MmapOffset || r.MmapOffset > long.MaxValue)
                throw new VhostProtocolException($"memory region {i} (gpa 0x{r.GuestPhysAddr:x} size 0x{r.MemorySize:x} uaddr 0x{r.UserspaceAddr:x} offset 0x{r.MmapOffset:x}) overflows 64 bits");
            if ((r.GuestPhysAddr | r.MemorySize) % 2 != 0) throw new VhostProtocolException($"memory region {i} is not 2-byte aligned");
            for (int j = 0; j < i; j++)
            {
                var o = regions[j];
                if (r.GuestPhysAddr < o.GuestPhysAddr + o.MemorySize && o.GuestPhysAddr < r.GuestPhysAddr + r.MemorySize)
                    throw new VhostProtocolException($"memory regions {j} and {i} overlap in guest-physical space");
                if (r.UserspaceAddr < o.UserspaceAddr + o.MemorySize && o.UserspaceAddr < r.UserspaceAddr + r.MemorySize)
                    throw new VhostProtocolException($"memory regions {j} and {i} overlap in front-end address space");
            }
        }
    }

    /// <summary>
    /// Maps region <paramref name="index"/> from <paramref name="fd"/> after checking the fd is memory that cannot
    /// shrink (or <paramref name="allowUnsealed"/>) and holds the whole region.
    /// </summary>
    public static MappedRegion MapRegion(VhostMemoryRegion r, SafeFd fd, int index, bool allowUnsealed, ILogger? log)
    {
        // Sealed against shrinking, the size checked below stays true for the mapping's life.
        if (!PeerFd.RequireSharedMemory(fd, $"memory region {index}", allowUnsealed))
            log?.LogWarning("memory region {Index} is not sealed against shrinking (accepted by --allow-unsealed-memory): a front-end that truncates it crashes this back-end", index);
        // A mapping past the end of the file would SIGBUS on first touch: the file must hold the region.
        long fileSize = fd.GetSize();
        if (fileSize < 0 || (ulong)fileSize < r.MmapOffset + r.MemorySize)
            throw new VhostProtocolException($"memory region {index} needs {r.MmapOffset + r.MemorySize} bytes of its file, which has {fileSize} (mmap would fault)");
        // Map from offset 0 as QEMU's own back-ends do: mmap offsets must be page aligned, region offsets need not.
        try { return MappedRegion.Map(fd, r.MmapOffset + r.MemorySize, 0); }
        catch (IOException e) { throw new VhostProtocolException($"memory region {index}: {e.Message}"); }
    }

    /// <summary>A table over regions already validated (<see cref="Validate"/>) and mapped (<see cref="MapRegion"/>).</summary>
    public static VhostMemoryTable Build(IReadOnlyList<(VhostMemoryRegion Region, MappedRegion Map)> regions)
    {
        var mapped = regions.Select(x => (x.Region, x.Map, x.Map.Address + (nint)x.Region.MmapOffset)).ToArray();
        var guest = new GuestMemory(mapped.Select((m, i) => new GuestRegion(m.Region.GuestPhysAddr, m.Region.MemorySize, m.Item3, null, $"vhost-region{i}")).ToArray());
        return new VhostMemoryTable(mapped, guest);
    }

    /// <summary>Front-end user address → guest-physical address, for a range that must lie in one region.</summary>
    public bool TryUserToGpa(ulong uaddr, ulong length, out ulong gpa)
    {
        foreach (var (r, _, _) in _regions)
        {
            ulong off = uaddr - r.UserspaceAddr;
            if (off < r.MemorySize && length <= r.MemorySize - off)
            {
                gpa = r.GuestPhysAddr + off;
                return true;
            }
        }
        gpa = 0;
        return false;
    }

    /// <summary>User address → GPA and how many bytes stay in that region.</summary>
    public bool TryUserToGpa(ulong uaddr, out ulong gpa, out ulong contiguous)
    {
        foreach (var (r, _, _) in _regions)
        {
            ulong off = uaddr - r.UserspaceAddr;
            if (off < r.MemorySize)
            {
                gpa = r.GuestPhysAddr + off;
                contiguous = r.MemorySize - off;
                return true;
            }
        }
        gpa = 0;
        contiguous = 0;
        return false;
    }
}
