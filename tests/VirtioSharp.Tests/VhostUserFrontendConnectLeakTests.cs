using VirtioSharp.Spec;
using VirtioSharp.Tests.Support;
using VirtioSharp.VhostUser.Frontend;
using VirtioSharp.VhostUser.Protocol;
using Act = VirtioSharp.Tests.Support.FakeBackend.Act;

namespace VirtioSharp.Tests;

[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class FrontendLeakCollection
{
    public const string Name = "frontend-connect-leaks";
}

/// <summary>
/// A connect the back-end refuses, abandons or leaves unanswered releases everything it created before the error
/// leaves: no descriptor (memfds, eventfds, the back-end channel's socket pair), no mapping of guest memory or the
/// dirty log, no IOTLB thread. Counted in /proc/self without a garbage collection, alone (no other test runs meanwhile).
/// </summary>
[Collection(FrontendLeakCollection.Name)]
public class VhostUserFrontendConnectLeakTests
{
    private static int Fds() => Directory.GetFiles("/proc/self/fd").Length;

    private static int GuestMappings() => File.ReadLines("/proc/self/maps").Count(l => l.Contains("memfd:virtio-sharp-"));

    // Linux keeps 15 characters of a thread's name: "vhost-user-frontend-iotlb" is "vhost-user-fron".
    private static int IotlbThreads() => Directory.GetDirectories("/proc/self/task")
        .Count(t => { try { return File.ReadAllText(Path.Combine(t, "comm")).StartsWith("vhost-user-fron", StringComparison.Ordinal); } catch (IOException) { return false; } });

    [Theory]
    [InlineData("close at SET_MEM_TABLE, IOMMU (channel thread running)", "SetMemTable", "Close", true, false, 0UL)]
    [InlineData("no answer to SET_MEM_TABLE, IOMMU", "SetMemTable", "Silence", true, false, 0UL)]
    [InlineData("no answer to SET_LOG_BASE (log mapped)", "SetLogBase", "Silence", false, true, 0UL)]
    [InlineData("close at SET_LOG_BASE, bounce-only window", "SetLogBase", "Close", false, true, 1UL << 20)]
    [InlineData("close at GET_FEATURES", "GetFeatures", "Close", false, false, 0UL)]
    public void AFailedConnectLeavesNoDescriptorMappingOrThread(string what, string request, string action, bool iommu, bool dirtyLog, ulong window)
    {
        var on = Enum.Parse<VhostRequest>(request);
        var act = Enum.Parse<Act>(action);
        void FailOnce()
        {
            using var be = new FakeBackend(VhostUserFrontendHostileBackendTests.AllProtocolFeatures, r => r == on ? act : Act.Answer);
            var e = VhostUserFrontendHostileBackendTests.Within(() =>
                VhostUserFrontend.Connect(be.SocketPath, DeviceId.Block, VhostUserFrontendHostileBackendTests.Options(iommu, dirtyLog, window)).Dispose());
            Assert.True(e is not null, $"{what}: the connect succeeded");
            Assert.Contains(request, e!.Message);
        }
        FailOnce();   // first use of sockets, threads and files in this process opens what stays open
        // Threads of earlier tests may still be closing their own descriptors: a round that sees no change at all
        // passes; a leak shows in every round (each of its connects adds to it).
        var rounds = new List<string>();
        for (int round = 0; round < 3; round++)
        {
            var before = (Fds: Fds(), Maps: GuestMappings(), Threads: IotlbThreads());
            for (int i = 0; i < 3; i++) FailOnce();
            var after = (Fds: Fds(), Maps: GuestMappings(), Threads: IotlbThreads());
            if (before == after) return;
            rounds.Add($"{before} -> {after}");
        }
        Assert.Fail($"{what}: descriptors, guest mappings, IOTLB threads grew in every round: {string.Join("; ", rounds)}");
    }
}
