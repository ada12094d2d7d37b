using VirtioSharp.Dma;
using VirtioSharp.Spec;
using VirtioSharp.VhostUser.Frontend;

namespace VirtioSharp.Cli;

/// <summary>
/// <c>explain --connect SOCKET</c>: the DMA decision for a real vhost-user connection. It connects a front-end with the
/// asked memory layout (all RAM shared, bounce-only, or the front-end as the IOMMU), reads the back-end's offered
/// features, and prints the policy's decision and reasons, and what the back-end can reach, as a driver would log them.
/// </summary>
internal static class ExplainConnection
{
    public static int Run(string socket, DeviceId device, ulong sharedWindow, InvalidationMode? iommu, TextWriter stdout, TextWriter stderr)
    {
        var options = new VhostUserFrontendOptions { MemorySize = 64UL << 20, SharedWindowSize = sharedWindow, Iommu = iommu };
        VhostUserFrontend fe;
        try { fe = VhostUserFrontend.Connect(socket, device, options); }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            stderr.WriteLine($"error: cannot explain the connection to {socket}: {e.Message} (is a back-end listening there? see --connect, --bounce-only, --frontend-iommu)");
            return 2;
        }
        using (fe)
        {
            ulong offered = fe.GetFeatures();
            var env = fe.Environment();
            var d = DmaPolicy.Decide(env.Facts, TransportKind.VhostUser, offered, 0, env.Mode);
            stdout.WriteLine($"back-end: {socket} ({device}, {fe.QueueCount} queue{(fe.QueueCount == 1 ? "" : "s")})");
            stdout.WriteLine($"offered: {VirtioFeature.Describe(offered, device)}");
            stdout.WriteLine($"platform: {env.Facts.Describe()}, policy {env.Mode}");
            stdout.WriteLine($"decision: {d.Summary}");
            stdout.WriteLine($"features: {VirtioFeature.Describe(d.Features, device)}");
            foreach (var reason in d.Reasons) stdout.WriteLine("  - " + reason);
            stdout.WriteLine("shared: " + (fe.BounceOnly
                ? $"only a window of {options.SharedWindowSize >> 10} KiB at 0x{fe.WindowBase:x} (rings, indirect tables and a {fe.BouncePool!.Size >> 10} KiB bounce pool); the {options.MemorySize >> 20} MiB of RAM stay private (never in the memory table)"
                : fe.Iommu is not null
                    ? $"all {options.MemorySize >> 20} MiB of RAM are in the memory table, but the back-end gets no guest-physical address: it reaches only the IOVAs this front-end's IOMMU maps, with their permissions ({iommu} invalidation)"
                    : $"all {options.MemorySize >> 20} MiB of RAM, by guest-physical address"));
            return d.Refused ? 1 : 0;
        }
    }
}
