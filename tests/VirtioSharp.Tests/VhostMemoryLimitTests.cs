using VirtioSharp.Tests.Support;
using VirtioSharp.VhostUser.Backend;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;
using static VirtioSharp.Tests.Support.HostileSession;

namespace VirtioSharp.Tests;

/// <summary>
/// Guest memory a front-end shares is bounded, and changing the table one region at a time never maps the rest again
/// (which would need the address space twice).
/// </summary>
public class VhostMemoryLimitTests
{
    private static VhostMemoryRegion Slot(int i) => new((ulong)i * MemBytes, MemBytes, UserAddr + (ulong)i * MemBytes, 0);

    /// <summary>Where this process maps the memfd named <paramref name="name"/> (one line of /proc/self/maps each).</summary>
    private static string[] MappingsOf(string name) =>
        File.ReadAllLines("/proc/self/maps").Where(l => l.Contains($"/memfd:{name} ")).Select(l => l.Split(' ')[0]).ToArray();

    [Fact]
    public void AddingAndRemovingRegionsKeepsTheOthersMappedWhereTheyAre()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        string a = $"keep-{Guid.NewGuid():N}"[..20];
        using var fa = MemFd.Create(a, MemBytes);
        c.Send(VhostRequest.SetProtocolFeatures, 1UL << VhostProtocolFeature.ConfigureMemSlots);
        c.Send(VhostRequest.AddMemReg, OneRegion(Slot(0)), [fa]);
        c.AskU64(VhostRequest.GetFeatures);
        var before = MappingsOf(a);
        Assert.Single(before);
        using var fb = MemFd.Create("other", MemBytes);
        using var fc = MemFd.Create("other", MemBytes);
        c.Send(VhostRequest.AddMemReg, OneRegion(Slot(1)), [fb]);
        c.Send(VhostRequest.AddMemReg, OneRegion(Slot(2)), [fc]);
        c.Send(VhostRequest.RemMemReg, OneRegion(Slot(1)));
        c.AskU64(VhostRequest.GetFeatures);
        Assert.Contains(rig.Log.Lines, l => l.Contains("memory table: gpa 0x0+0x100000, gpa 0x200000+0x100000"));
        Assert.Equal(before, MappingsOf(a));
    }

    [Fact]
    public void MemoryBeyondTheLimitIsRefused()
    {
        using var rig = new VhostRig(options: new VhostUserBackendOptions { MaxGuestMemoryBytes = 2 * MemBytes });
        using var c = rig.Connect();
        c.Send(VhostRequest.SetProtocolFeatures, 1UL << VhostProtocolFeature.ConfigureMemSlots);
        for (int i = 0; i < 2; i++)
        {
            using var f = MemFd.Create("mem", MemBytes);
            c.Send(VhostRequest.AddMemReg, OneRegion(Slot(i)), [f]);
        }
        c.AskU64(VhostRequest.GetFeatures);
        using var third = MemFd.Create("mem", MemBytes);
        c.Send(VhostRequest.AddMemReg, OneRegion(Slot(2)), [third]);
        Assert.True(c.IsClosedByPeer());
        Assert.True(rig.WaitClosed(1));
        Assert.Contains(rig.Log.Lines, l => l.Contains("closing the connection") && l.Contains("limit"));
    }
}
