using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;

namespace VirtioSharp.Cli;

/// <summary>--help as System.CommandLine prints it, then the command's examples (every command has at least one).</summary>
internal sealed class ExampleHelpAction(HelpAction inner, IReadOnlyDictionary<Command, string[]> examples) : SynchronousCommandLineAction
{
    public override int Invoke(ParseResult parseResult)
    {
        int rc = inner.Invoke(parseResult);
        if (examples.TryGetValue(parseResult.CommandResult.Command, out var lines))
        {
            var output = parseResult.InvocationConfiguration.Output;
            output.WriteLine("Examples:");
            foreach (var l in lines) output.WriteLine("  " + l);
            output.WriteLine();
        }
        return rc;
    }
}
